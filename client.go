package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lcpush/lcpush/pkg/sdk"
)

// runClient is the example SDK client: it gets a token from the Center API
// (or takes one), connects through the dispatcher (or straight to a room),
// prints every push and ACKs it (the SDK's automatic ACK).
func runClient(args []string) error {
	fs := flag.NewFlagSet("lcpush client", flag.ContinueOnError)
	uid := fs.String("uid", "alice", "user id")
	app := fs.Uint("app", 1, "app id")
	tok := fs.String("token", "", "token; empty asks the Center API with -key")
	key := fs.String("key", "demo-key-app-1", "app API key used to ask for a token")
	centerURL := fs.String("center", "http://127.0.0.1:8000", "Center API base URL")
	dispatch := fs.String("dispatch", "http://127.0.0.1:8001", "dispatcher base URL; empty connects to -addr")
	addr := fs.String("addr", "127.0.0.1:7000", "room address (fallback)")
	count := fs.Int("count", 0, "exit after this many messages (0 = run until Ctrl-C)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tokenFunc := func(ctx context.Context) (string, error) {
		if *tok != "" {
			return *tok, nil
		}
		return fetchToken(ctx, *centerURL, *key, uint32(*app), *uid)
	}
	got := make(chan struct{}, 1)
	cli, err := sdk.New(sdk.Config{
		DispatchURL: *dispatch,
		Addrs:       []string{*addr},
		App:         uint32(*app),
		UID:         *uid,
		TokenFunc:   tokenFunc,
		SDKName:     "lcpush-example",
		OnMessage: func(m sdk.Message) {
			fmt.Printf("push id=%d app=%d qos1=%v payload=%q\n", m.ID, m.App, m.QoS1, m.Payload)
			select {
			case got <- struct{}{}:
			default:
			}
		},
		OnKick: func(code int, reason string) { fmt.Printf("kicked: code=%d reason=%s\n", code, reason) },
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = cli.Connect(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	fmt.Fprintf(os.Stderr, "connected as %s to %s (app %d, heartbeat %s); waiting for pushes\n", *uid, cli.Room(), *app, cli.HB())
	n := 0
	for {
		select {
		case <-ctx.Done():
			return cli.Close()
		case <-got:
			n++
			if *count > 0 && n >= *count {
				time.Sleep(100 * time.Millisecond) // let the automatic ACK leave
				return cli.Close()
			}
		}
	}
}

// fetchToken asks POST /v1/apps/{app}/tokens for a one-day token.
func fetchToken(ctx context.Context, base, key string, app uint32, uid string) (string, error) {
	body, _ := json.Marshal(map[string]any{"uid": uid, "ttl": 86400})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		fmt.Sprintf("%s/v1/apps/%d/tokens", strings.TrimRight(base, "/"), app), strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
		Error *struct {
			Code, Message string
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if out.Error != nil || out.Token == "" {
		if out.Error != nil {
			return "", fmt.Errorf("token: %s: %s", out.Error.Code, out.Error.Message)
		}
		return "", errors.New("token: empty answer")
	}
	return out.Token, nil
}
