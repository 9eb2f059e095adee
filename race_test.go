//go:build race

package main

// raceEnabled: the test binary runs under -race, and so do the server
// processes it builds (buildBinary).
const raceEnabled = true
