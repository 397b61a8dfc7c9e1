// Command authority-host runs the Authority sender-constraint host.
//
//	authority-host serve   --config FILE   run the server
//	authority-host migrate --config FILE   apply PostgreSQL migrations
//	authority-host check   --config FILE   build the Authority as serve would, without listening
//	authority-host hash-secret             print the secretDigest of a secret read from stdin
//	authority-host hash-password           print the Argon2id PHC string of a password read from stdin
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
	"stellaops.org/authority/host/users"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: authority-host <command> [flags]

commands:
  serve   --config FILE   run the Authority (HTTP, HTTPS with client certificates)
  migrate --config FILE   apply the PostgreSQL schema migrations and exit
  check   --config FILE   build the Authority as serve would (keys, certificates, stores, plugins) and exit
  hash-secret             read a client secret on stdin, print its secretDigest
  hash-password           read a user's password on stdin, print its passwordHash (hash-password --help)
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
			// Build everything serve builds, stop before listening.
			if err := app.Check(context.Background(), cfg, app.NewLogger(stderr, "warn")); err != nil {
				fmt.Fprintln(stderr, "check:", err)
				return 1
			}
			fmt.Fprintln(stdout, "configuration is valid: the Authority builds (keys, certificates, trust roots, stores, plugins) as serve would")
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
		// Request logs go out in batches (app.LogWriter); Close writes the
		// rest before the process exits.
		lw := app.NewLogWriter(stderr, 0)
		defer lw.Close()
		logger := app.NewLogger(lw, cfg.Logging.Level)
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
	case "hash-password":
		return runHashPassword(rest, stdin, stdout, stderr)
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

// runHashPassword prints the Argon2id PHC string of the password on the
// first line of stdin, with the cost of --config's security.passwords
// (or the flags, or the defaults): what tenants[].users[].passwordHash
// and authority_users.password_hash hold.
func runHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: authority-host hash-password [--config FILE] [--memory-kib N --iterations N --parallelism N] < password

Reads a password (the first line of stdin) and prints its Argon2id PHC
string for tenants[].users[].passwordHash or authority_users.password_hash.
The cost is security.passwords.argon2id of --config, else the flags, else
the defaults (m=19456 KiB, t=2, p=1; OWASP). Costs below OWASP's floor are
refused.

`)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "take the cost from this configuration's security.passwords.argon2id")
	def := config.Default().Security.Passwords.Argon2id
	mem := fs.Uint("memory-kib", uint(def.MemoryKiB), "memory cost m, KiB")
	iter := fs.Uint("iterations", uint(def.Iterations), "time cost t")
	par := fs.Uint("parallelism", uint(def.Parallelism), "lanes p")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	p := users.Params{MemoryKiB: uint32(min(*mem, 1<<32-1)), Iterations: uint32(min(*iter, 1<<32-1)), Parallelism: uint8(min(*par, 255))}
	if *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		a := cfg.Security.Passwords.Argon2id
		p = users.Params{MemoryKiB: a.MemoryKiB, Iterations: a.Iterations, Parallelism: a.Parallelism}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "hash-password: no password on stdin")
		return 1
	}
	h, err := users.Hash([]byte(pw), p)
	if err != nil {
		fmt.Fprintln(stderr, "hash-password:", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}
