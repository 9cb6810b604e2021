// Command fanout runs a Fanout SFU node: WebSocket signaling in LiveKit's
// client protocol, WebRTC media on one muxed UDP port, and the RoomService API.
// `fanout token ...` mints an access token instead.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// version is the server version reported to clients.
var version = "0.1.0"

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println(err)
			return
		}
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Getenv, os.Stdout)
	}
	cfg, err := LoadConfig(args, os.Getenv)
	if err != nil {
		return err
	}
	return serve(cfg)
}
