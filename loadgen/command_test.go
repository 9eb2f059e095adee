package loadgen

import "testing"

// The recorded command names the binary lcpush (never go run's temporary
// path) and quotes what the shell would split.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		self, args []string
		want       string
	}{
		{[]string{"bench"}, []string{"fanout", "-n", "10000", "-src", "127.0.0.23"}, "lcpush bench fanout -n 10000 -src 127.0.0.23"},
		{[]string{"bench"}, []string{"unicast", "-rates", "1000,5000", "-out", "my results"}, "lcpush bench unicast -rates 1000,5000 -out 'my results'"},
		{[]string{"bench"}, []string{"idle", "-api-key", "it's", "-secret", ""}, `lcpush bench idle -api-key 'it'\''s' -secret ''`},
		{nil, []string{"smoke"}, "lcpush smoke"},
	} {
		if got := commandLine(tc.self, tc.args); got != tc.want {
			t.Errorf("commandLine(%q, %q) = %s, want %s", tc.self, tc.args, got, tc.want)
		}
	}
}
