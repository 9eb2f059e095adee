package keeper

import (
	"flag"
	"io"
	"testing"
)

// The CLI takes the servers' -zk-root, and -root as the same flag.
func TestCLIRootFlags(t *testing.T) {
	for _, args := range [][]string{{"-zk-root", "/c"}, {"-root", "/c"}} {
		f := &cliFlags{root: DefaultRoot}
		fs := flag.NewFlagSet("keeper", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.register(fs)
		if err := fs.Parse(args); err != nil || f.root != "/c" {
			t.Errorf("%v: root %q, err %v; want /c", args, f.root, err)
		}
	}
}
