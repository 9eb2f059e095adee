package center

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// jsonPush decodes b as the push handler's encoding/json path does
// (decodeBody: unknown fields refused, one value, nothing after it).
func jsonPush(b []byte) (pushRequest, error) {
	var req pushRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, io.ErrUnexpectedEOF
	}
	return req, nil
}

// samePush says whether the fast path's result is what encoding/json
// decoded (and messageFields.message would make of it).
func samePush(t testing.TB, b []byte, f *fastPush, req pushRequest) {
	t.Helper()
	if !slices.Equal(f.uids, req.UIDs) {
		t.Fatalf("%q: uids %q, encoding/json %q", b, f.uids, req.UIDs)
	}
	var want []byte
	switch {
	case req.Text != nil && req.Data != nil:
		t.Fatalf("%q: fast path took text and data", b)
	case req.Text != nil:
		want = []byte(*req.Text)
	case req.Data != nil:
		d, err := base64.StdEncoding.DecodeString(*req.Data)
		if err != nil {
			t.Fatalf("%q: fast path took data that is not base64", b)
		}
		want = d
	default:
		t.Fatalf("%q: fast path took a body without text or data", b)
	}
	if !bytes.Equal(f.payload, want) {
		t.Fatalf("%q: payload %q, encoding/json %q", b, f.payload, want)
	}
	if (req.QoS != nil) != f.hasQoS || (req.QoS != nil && *req.QoS != f.qos) {
		t.Fatalf("%q: qos %v %d, encoding/json %v", b, f.hasQoS, f.qos, req.QoS)
	}
	if (req.TTL != nil) != f.hasTTL || (req.TTL != nil && *req.TTL != f.ttl) {
		t.Fatalf("%q: ttl %v %d, encoding/json %v", b, f.hasTTL, f.ttl, req.TTL)
	}
}

var pushBodySeeds = []string{
	`{"uids":["u1"],"text":"hello","qos":0}`,
	`{"uids":["lg-1"],"data":"AAECAwQ=","qos":1,"ttl":60}`,
	` { "uids" : [ "a" , "b" ] , "text" : "x\n\"\\\/\b\f\r\t\u00e9\ud83d\ude00" } `,
	`{"uids":["a"],"text":"\ud83d"}`,       // lone surrogate: U+FFFD in encoding/json
	`{"uids":["a"],"text":"\udc00\u0041"}`, // lone low surrogate
	`{"uids":["\u0061"],"text":"é"}`,
	`{"uids":["a"],"text":"x","UIDS":["b"]}`,
	`{"UIDs":["a"],"Text":"x"}`,
	`{"uids":["a"],"text":"x","text":"y"}`,
	`{"uids":["a"],"text":"x","data":"AA=="}`,
	`{"uids":["a"],"text":null}`,
	`{"uids":null,"text":"x"}`,
	`{"uids":[],"text":"x"}`,
	`{"uids":["a"],"text":"x","qos":1.0}`,
	`{"uids":["a"],"text":"x","qos":-0}`,
	`{"uids":["a"],"text":"x","qos":01}`,
	`{"uids":["a"],"text":"x","ttl":1e2}`,
	`{"uids":["a"],"text":"x","ttl":99999999999999999999}`,
	`{"uids":["a"],"text":"x","qos":"1"}`,
	`{"uids":["a"],"data":"AA==\n"}`,
	`{"uids":["a"],"data":"AA\u003d\u003d"}`,
	`{"uids":["a"],"data":"A"}`,
	`{"uids":["a"],"text":"x"} {}`,
	`{"uids":["a"],"text":"x"}` + "\x00",
	`{"uids":["a"],"text":"x",}`,
	`{"uids":["a",],"text":"x"}`,
	`{"uids":["a"],"text":"x","extra":1}`,
	"{\"uids\":[\"a\xff\"],\"text\":\"x\"}",
	"{\"uids\":[\"a\"],\"text\":\"\x01\"}",
	`{"uids":["a"],"text":"x"`,
	`{}`,
	`null`,
	``,
	`[]`,
	`{"uids":["a"],"text":"\x"}`,
	`{"uids":["a"],"text":"\u12"}`,
	`{"uids":["a"],"qoſ":1,"text":"x"}`,
}

// FuzzPushBody: whatever the fast path accepts, encoding/json accepts with
// the same values. (What it refuses goes to encoding/json: no equivalence
// is needed there.)
func FuzzPushBody(f *testing.F) {
	for _, s := range pushBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast fastPush
		if parsePushBody(b, &fast) != nil {
			return
		}
		req, err := jsonPush(b)
		if err != nil {
			t.Fatalf("%q: fast path accepted, encoding/json: %v", b, err)
		}
		samePush(t, b, &fast, req)
	})
}

// TestPushBodyFast: the common bodies take the fast path; the others are
// left to encoding/json.
func TestPushBodyFast(t *testing.T) {
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{`{"uids":["u1"],"text":"hello","qos":0}`, true},
		{`{"uids":["lg-1"],"data":"AAECAwQ=","qos":1,"ttl":60}`, true},
		{` { "uids" : [ "a" , "b" ] , "text" : "x\n\"\\\/\b\f\r\t\u00e9\ud83d\ude00" } `, true},
		{`{"uids":["\u0061"],"text":"é","ttl":-0}`, true},
		{`{"uids":["a"],"data":"AA==\n"}`, true},
		{`{"uids":["a"],"text":"\ud83d"}`, false},
		{`{"UIDs":["a"],"Text":"x"}`, false},
		{`{"uids":["a"],"text":"x","text":"y"}`, false},
		{`{"uids":["a"],"text":"x","data":"AA=="}`, false},
		{`{"uids":["a"],"text":null}`, false},
		{`{"uids":[],"text":"x"}`, false},
		{`{"uids":["a"],"text":"x","qos":1.0}`, false},
		{`{"uids":["a"],"text":"x","qos":01}`, false},
		{`{"uids":["a"],"text":"x"} {}`, false},
		{`{"uids":["a"],"text":"x"}` + "\x00", false},
		{`{"uids":["a"],"text":"x","extra":1}`, false},
		{"{\"uids\":[\"a\xff\"],\"text\":\"x\"}", false},
		{`{"uids":["a"],"data":"A"}`, false},
		{`{}`, false},
		{``, false},
	} {
		t.Run(tc.body, func(t *testing.T) {
			var fast fastPush
			err := parsePushBody([]byte(tc.body), &fast)
			if got := err == nil; got != tc.fast {
				t.Fatalf("fast path %v, want %v", got, tc.fast)
			}
			if err == nil {
				req, err := jsonPush([]byte(tc.body))
				if err != nil {
					t.Fatalf("encoding/json refuses it: %v", err)
				}
				samePush(t, []byte(tc.body), &fast, req)
			}
		})
	}
}

// TestDecodePushBodyLimit: a body over maxBody is refused as too large,
// as decodeBody refused it, and a short one the fast path refuses gets
// encoding/json's answer.
func TestDecodePushBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		name, body, code string
	}{
		{"over the limit", `{"uids":["a"],"text":"` + strings.Repeat("x", maxBody) + `"}`, "too_large"},
		{"syntax error before the limit", `{"uids":x` + strings.Repeat(" ", maxBody), "bad_request"},
		{"unknown field", `{"uids":["a"],"text":"x","extra":1}`, "bad_request"},
		{"empty", ``, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/apps/1/push", strings.NewReader(tc.body))
			var fast fastPush
			_, e := decodePushBody(httptest.NewRecorder(), r, &fast)
			if e == nil || e.code != tc.code {
				t.Fatalf("got %v, want %s", e, tc.code)
			}
		})
	}
}

func TestWritePushAnswer(t *testing.T) {
	for _, tc := range []struct {
		id             uint64
		online, stored int
	}{{1, 0, 0}, {18446744073709551615, 1, 1}, {42, 100, 7}} {
		a, b := httptest.NewRecorder(), httptest.NewRecorder()
		writePushAnswer(a, tc.id, tc.online, tc.stored)
		writeJSON(b, http.StatusOK, pushAnswer{MsgID: strconvU(tc.id), Online: tc.online, Stored: tc.stored})
		if a.Body.String() != b.Body.String() || a.Header().Get("Content-Type") != b.Header().Get("Content-Type") || a.Code != b.Code {
			t.Fatalf("got %d %q %q, want %d %q %q", a.Code, a.Header(), a.Body, b.Code, b.Header(), b.Body)
		}
	}
}

func TestHasDup(t *testing.T) {
	many := func(n int, dup bool) []string {
		var out []string
		for i := range n {
			out = append(out, "u"+strconvU(uint64(i)))
		}
		if dup {
			out = append(out, "u0")
		}
		return out
	}
	for _, tc := range []struct {
		uids []string
		want bool
	}{
		{[]string{"a"}, false},
		{[]string{"a", "b", "a"}, true},
		{many(smallList, false), false},
		{many(smallList, true), true},
		{many(3*smallList, false), false},
		{many(3*smallList, true), true},
	} {
		if got := hasDup(tc.uids); got != tc.want {
			t.Fatalf("hasDup(%d uids) = %v, want %v", len(tc.uids), got, tc.want)
		}
	}
}

func strconvU(v uint64) string { return strconv.FormatUint(v, 10) }
