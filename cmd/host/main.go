// Command authority-host runs the Authority sender-constraint host.
//
//	authority-host serve   --config FILE   run the server
//	authority-host migrate --config FILE   apply PostgreSQL migrations
//	authority-host check   --config FILE   validate a configuration
//	authority-host hash-secret             print the secretDigest of a secret read from stdin
//	authority-host audit verify            check the audit trail's hash chains and checkpoints
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: authority-host <command> [flags]

commands:
  serve   --config FILE   run the Authority (HTTP, HTTPS with client certificates)
  migrate --config FILE   apply the PostgreSQL schema migrations and exit
  check   --config FILE   load and validate a configuration and exit
  hash-secret             read a client secret on stdin, print its secretDigest
  plugin  <command>       inspect, verify, sign, keygen, test plugin modules (plugin help)
  audit   <command>       verify the audit trail, print its checkpoint key (audit help)
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve", "migrate", "check":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "path to authority.yaml")
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if *path == "" {
			fmt.Fprintln(stderr, "authority-host "+cmd+": --config is required")
			return 2
		}
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		switch cmd {
		case "check":
			fmt.Fprintln(stdout, "configuration is valid")
			return 0
		case "migrate":
			if err := app.Migrate(context.Background(), cfg); err != nil {
				fmt.Fprintln(stderr, "migrate:", err)
				return 1
			}
			fmt.Fprintln(stdout, "migrations applied")
			return 0
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		logger := app.NewLogger(stderr, cfg.Logging.Level)
		if err := app.Run(ctx, *path, cfg, logger); err != nil {
			logger.Error("authority.server.failed", "error", err.Error())
			return 1
		}
		return 0
	case "hash-secret":
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(stderr, err)
			return 1
		}
		secret := strings.TrimRight(line, "\r\n")
		if len(secret) < 16 {
			fmt.Fprintln(stderr, "hash-secret: client secrets must be at least 16 characters of high entropy")
			return 1
		}
		fmt.Fprintln(stdout, config.DigestSecret(secret))
		return 0
	case "plugin":
		return runPlugin(rest, stdin, stdout, stderr)
	case "audit":
		return runAudit(rest, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "authority-host: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
