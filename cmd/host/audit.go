package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
)

const auditUsage = `usage: authority-host audit <command> [flags]

commands:
  verify [--config FILE] [--file PATH] [--key PEM]... [--max-age DURATION]
         [--expect NODE:SEQ:HASH]... [--json]
        check the audit trail: every node's hash chain (sequence numbers
        contiguous, each record naming the hash of the one before) and its
        signed checkpoints. With --config: the sink it configures (audit.file,
        or the authority_audit table of storage.postgres), the public half of
        audit.signingKeyFile and audit.verifyKeys, and --max-age defaulting to
        3 x audit.checkpointInterval. --file PATH reads a JSON-lines file
        instead; --key adds a trusted key (PKIX public or PKCS#8 private PEM).
        A chain that does not end with a final checkpoint and whose last one
        is older than --max-age (default 3m without --config; 0: not
        checked) is reported as cut off. With --config, a chain that starts
        after deleted records must start at a checkpoint older than
        audit.retention. --expect names a record that must be there (the
        node, seq and hash of an authority.audit.checkpoint log line): it
        finds a tail cut back to an earlier clean stop, which the sink alone
        cannot show. Prints the first broken, missing or reordered record.
  public-key --config FILE
        print the public key of audit.signingKeyFile (PKIX PEM), for
        verifiers that must not hold the private key

exit status: 0 every chain verifies, 1 a problem was found (or the trail
could not be read), 2 usage error
`

// runAudit implements "authority-host audit ...".
func runAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if cmd == "-h" || cmd == "--help" || cmd == "help" {
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fs := flag.NewFlagSet("audit "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "path to authority.yaml")
	file := fs.String("file", "", "a JSON-lines audit file")
	var keyFiles []string
	fs.Func("key", "trusted checkpoint key (repeatable)", func(s string) error { keyFiles = append(keyFiles, s); return nil })
	maxAge := fs.Duration("max-age", -1, "how old the last checkpoint of a chain that did not stop cleanly may be")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var expect []audit.Expected
	fs.Func("expect", "NODE:SEQ:HASH of a record the chain must hold (repeatable)", func(s string) error {
		i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
		if i <= 0 || j <= i {
			return fmt.Errorf("%q is not NODE:SEQ:HASH", s)
		}
		seq, err := strconv.ParseUint(s[i+1:j], 10, 64)
		if err != nil || seq == 0 || len(s[j+1:]) != 64 {
			return fmt.Errorf("%q is not NODE:SEQ:HASH (seq a positive number, hash 64 hex digits)", s)
		}
		expect = append(expect, audit.Expected{Node: s[:i], Seq: seq, Hash: strings.ToLower(s[j+1:])})
		return nil
	})
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, auditUsage)
			return 0
		}
		fmt.Fprintf(stderr, "authority-host audit %s: %v\n\n%s", cmd, err, auditUsage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "authority-host audit %s: unexpected argument %q\n\n%s", cmd, fs.Arg(0), auditUsage)
		return 2
	}
	var cfg *config.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	ctx := context.Background()
	switch cmd {
	case "public-key":
		if cfg == nil || cfg.Audit.SigningKeyFile == "" {
			fmt.Fprintln(stderr, "authority-host audit public-key: --config with audit.signingKeyFile is required")
			return 2
		}
		pub, err := audit.LoadVerifyKey(config.ResolvePath(cfg.Audit.SigningKeyFile))
		if err != nil {
			fmt.Fprintln(stderr, "audit.signingKeyFile:", err)
			return 1
		}
		pemBytes, _ := audit.MarshalPublicKey(pub)
		stdout.Write(pemBytes)
		return 0
	case "verify":
	default:
		fmt.Fprintf(stderr, "authority-host audit: unknown command %q\n\n%s", cmd, auditUsage)
		return 2
	}

	var keys []ed25519.PublicKey
	addKey := func(path string) error {
		k, err := audit.LoadVerifyKey(path)
		if err == nil {
			keys = append(keys, k)
		}
		return err
	}
	for _, k := range keyFiles {
		if err := addKey(k); err != nil {
			fmt.Fprintln(stderr, "--key:", err)
			return 1
		}
	}
	opts := audit.VerifyOptions{Now: time.Now(), Expect: expect, MaxCheckpointAge: 3 * time.Minute}
	if cfg != nil {
		opts.CheckRetention, opts.Retention = true, cfg.Audit.Retention.D()
		if cfg.Audit.SigningKeyFile != "" {
			if err := addKey(config.ResolvePath(cfg.Audit.SigningKeyFile)); err != nil {
				fmt.Fprintln(stderr, "audit.signingKeyFile:", err)
				return 1
			}
		}
		for _, k := range cfg.Audit.VerifyKeys {
			if err := addKey(config.ResolvePath(k)); err != nil {
				fmt.Fprintln(stderr, "audit.verifyKeys:", err)
				return 1
			}
		}
		opts.MaxCheckpointAge = 3 * cfg.Audit.CheckpointInterval.D()
	}
	var scan func(ctx context.Context, fn func(audit.Sealed) error) error
	where := ""
	fileScan := func(path string) {
		where = "file " + path
		scan = func(ctx context.Context, fn func(audit.Sealed) error) error { return audit.ScanFile(ctx, path, fn) }
	}
	switch {
	case *file != "":
		fileScan(*file)
	case cfg == nil:
		fmt.Fprintf(stderr, "authority-host audit verify: --config or --file is required\n\n%s", auditUsage)
		return 2
	case cfg.AuditSink() == "log":
		fmt.Fprintln(stderr, "authority-host audit verify: the configuration has no durable audit sink (audit.sink is log): nothing to verify")
		return 1
	case cfg.AuditSink() == "file":
		fileScan(config.ResolvePath(cfg.Audit.File))
	default:
		st, _, err := app.OpenAuditStore(ctx, cfg, nil, false) // verify reads; it never migrates
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer st.Close()
		where, scan = "table authority_audit", st.Scan
	}
	if *maxAge >= 0 {
		opts.MaxCheckpointAge = *maxAge
	}
	if len(keys) == 0 {
		fmt.Fprintln(stderr, "authority-host audit verify: no checkpoint key (--key, or --config with audit.signingKeyFile): checkpoints cannot be checked")
		return 2
	}
	opts.Keys = keys
	rep, err := audit.Verify(ctx, scanner(scan), opts)
	if err != nil {
		fmt.Fprintf(stderr, "authority-host audit verify: reading %s: %v\n", where, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(stdout, where, rep)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// scanner adapts a scan function to the part of audit.Store Verify uses.
type scanner func(ctx context.Context, fn func(audit.Sealed) error) error

func (s scanner) Scan(ctx context.Context, fn func(audit.Sealed) error) error { return s(ctx, fn) }

func printReport(w io.Writer, where string, rep audit.Report) {
	fmt.Fprintf(w, "audit trail: %s: %d records, %d chains\n", where, rep.Records, len(rep.Chains))
	for _, c := range rep.Chains {
		fmt.Fprintf(w, "  node %s: %d records, seq %d..%d", c.Node, c.Records, c.First, c.Last)
		if c.Anchored {
			fmt.Fprint(w, " (earlier records purged; starts at a signed checkpoint)")
		}
		switch {
		case c.Final:
			fmt.Fprint(w, ", ends with a final checkpoint")
		case c.LastCheckpoint > 0:
			fmt.Fprintf(w, ", last checkpoint seq %d at %s, %d records after it not yet signed",
				c.LastCheckpoint, c.LastCheckpointAt.UTC().Format(time.RFC3339), c.Unsealed)
		default:
			fmt.Fprint(w, ", no checkpoint")
		}
		fmt.Fprintln(w)
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK: every chain verifies")
		return
	}
	fmt.Fprintf(w, "FAILED: %s\n", rep.Problems[0])
	for i, p := range rep.Problems[1:] {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more\n", len(rep.Problems)-21)
			break
		}
		fmt.Fprintf(w, "  also: %s\n", p)
	}
}
