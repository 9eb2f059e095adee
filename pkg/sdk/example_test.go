package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/lcpush/lcpush/pkg/sdk"
)

// A device that asks the dispatcher for gateways, prints each message and
// lets the SDK ACK it.
func Example() {
	c, err := sdk.New(sdk.Config{
		DispatchURL: "http://dispatcher.example:8080",
		Addrs:       []string{"gw1.example:7000"}, // fallback when the dispatcher is down
		App:         7,
		UID:         "device-42",
		TokenFunc: func(ctx context.Context) (string, error) {
			return "1900000000.<hmac from the product back end>", nil
		},
		Net: "wifi",
		OnMessage: func(m sdk.Message) {
			fmt.Printf("message %d for app %d: %s\n", m.ID, m.App, m.Payload)
		},
		OnKick: func(code int, reason string) {
			log.Printf("kicked: %d %s", code, reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err) // a refused token is a *proto.Error with Code "bad_token"
	}
	// Report something to the product's back end and wait until it is accepted.
	if err := c.Upstream(ctx, 7, 1, []byte(`{"read":true}`), true); err != nil {
		log.Print(err)
	}
	<-c.Done() // until Close or a terminal kick
}

// A web view or a network that only lets HTTPS through: WebSocket over TLS,
// with the gateway's key pinned (the current key and a backup).
func Example_wss() {
	c, err := sdk.New(sdk.Config{
		DispatchURL: "https://dispatcher.example", // asked with transport=wss
		Addrs:       []string{"wss://gw1.example/v1/ws"},
		Transport:   sdk.TransportWSS,
		Pins: []string{
			"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
			"sha256/YLh1dUR9y6Kja30RrAn7JKnbQG/uEtLMkBgFF2Fuihg=",
		},
		App:   7,
		UID:   "device-42",
		Token: "1900000000.<hmac from the product back end>",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); errors.Is(err, sdk.ErrPinMismatch) {
		log.Fatal("the gateway presented an unexpected key: ", err)
	}
}
