// Command fanout-load is Fanout's load generator: it speaks LiveKit's client
// protocol like any SDK (through signaling/client), so it works against
// fanout and livekit-server alike.
//
// Subcommands:
//
//	fanout-load publish --url ws://HOST:PORT --api-key K --api-secret S --room R --identity pub
//
// publish sends a three-layer VP8 simulcast camera (rids q/h/f, 320x180
// ~150 kbit/s, 640x360 ~500 kbit/s, 1280x720 ~1.5 Mbit/s, 20 fps, from the
// test media in signaling/testdata/simulcast) plus an Opus microphone, looped,
// until it is stopped (SIGINT/SIGTERM) or --duration ends.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// errUsage marks a bad command line; main exits 2 on it.
var errUsage = errors.New("usage")

// commands maps a subcommand to its entry point.
var commands = map[string]func(args []string, stdout, stderr io.Writer) error{
	"publish": runPublish,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fanout-load: unknown subcommand %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd(args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "fanout-load %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: fanout-load <subcommand> [flags]

subcommands:
  publish   publish a three-layer VP8 simulcast camera and an Opus microphone
            (fanout-load publish -h for its flags)
`)
}
