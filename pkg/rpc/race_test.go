//go:build race

package rpc

// raceEnabled: under -race, sync.Pool drops objects at random, so allocation
// counts mean nothing.
const raceEnabled = true
