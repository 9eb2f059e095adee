package proto

import (
	"errors"
	"reflect"
	"testing"
)

func TestJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		v    any
		into func() any
		body string
	}{
		{"auth", Header{Op: OpAuth, Seq: 1, App: 7}, &Auth{UID: "u1", Token: "t", Device: "d", Net: "wifi", HB: 30, SDK: "go"},
			func() any { return &Auth{} }, `{"uid":"u1","token":"t","device":"d","net":"wifi","hb":30,"sdk":"go"}`},
		{"auth minimal", Header{Op: OpAuth, App: 7}, &Auth{UID: "u1", Token: "t"},
			func() any { return &Auth{} }, `{"uid":"u1","token":"t"}`},
		{"auth_ok", Header{Op: OpAuthOK, Seq: 1}, &AuthOK{HB: 60, Room: "room-1", ServerTime: 1700000000},
			func() any { return &AuthOK{} }, `{"hb":60,"room":"room-1","server_time":1700000000}`},
		{"bind", Header{Op: OpBind, Seq: 2, App: 8}, &Bind{Token: "x"},
			func() any { return &Bind{} }, `{"token":"x"}`},
		{"kick", Header{Op: OpKick}, &Kick{Code: 1, Reason: "login_elsewhere"},
			func() any { return &Kick{} }, `{"code":1,"reason":"login_elsewhere"}`},
		{"redirect", Header{Op: OpRedirect}, &Redirect{Addrs: []string{"a:1", "b:2"}, AfterMS: 500, Reason: "drain"},
			func() any { return &Redirect{} }, `{"addrs":["a:1","b:2"],"after_ms":500,"reason":"drain"}`},
		{"error", Header{Op: OpError, Seq: 3}, &Error{Code: ErrCodeBadToken, Message: "expired"},
			func() any { return &Error{} }, `{"code":"bad_token","message":"expired"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendJSON(nil, tt.h, tt.v)
			f, n, err := Parse(b, DefaultMaxLen)
			if err != nil || n != len(b) {
				t.Fatalf("Parse: %d %v", n, err)
			}
			want := tt.h
			want.Ver = Version
			if f.Header != want {
				t.Fatalf("header %+v; want %+v", f.Header, want)
			}
			if string(f.Body) != tt.body {
				t.Fatalf("body %s; want %s", f.Body, tt.body)
			}
			got := tt.into()
			if err := DecodeJSON(f.Body, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.v) {
				t.Fatalf("decoded %+v; want %+v", got, tt.v)
			}
		})
	}
}

func TestAppendError(t *testing.T) {
	b := AppendError(nil, 9, ErrCodeNotBound, "app 3")
	f, _, err := Parse(b, DefaultMaxLen)
	if err != nil {
		t.Fatal(err)
	}
	if f.Op != OpError || f.Seq != 9 || f.App != 0 {
		t.Fatalf("header %+v", f.Header)
	}
	var e Error
	if err := DecodeJSON(f.Body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != ErrCodeNotBound || e.Message != "app 3" || e.Error() != "not_bound: app 3" {
		t.Fatalf("got %+v %q", e, e.Error())
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"valid", `{"uid":"a","token":"b"}`, true},
		{"unknown field ignored", `{"uid":"a","token":"b","future":[1,2]}`, true},
		{"whitespace", " {\"uid\":\"a\"} \n", true},
		{"empty", ``, false},
		{"not json", `uid=a`, false},
		{"trailing object", `{"uid":"a"}{"uid":"b"}`, false},
		{"trailing garbage", `{"uid":"a"}x`, false},
		{"wrong type", `{"uid":1}`, false},
		{"array", `[1]`, false},
		{"truncated", `{"uid":"a"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Auth
			err := DecodeJSON([]byte(tt.body), &a)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v; want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadBody) {
				t.Fatalf("err %v does not wrap ErrBadBody", err)
			}
		})
	}
}

func TestKickReason(t *testing.T) {
	want := map[int]string{0: "unknown", 1: "login_elsewhere", 2: "admin", 3: "banned", 4: "server_shutdown", 5: "unknown", -1: "unknown"}
	for code, reason := range want {
		if got := KickReason(code); got != reason {
			t.Errorf("KickReason(%d) = %q; want %q", code, got, reason)
		}
	}
}
