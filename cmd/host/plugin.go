package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/plugin"
)

const pluginUsage = `usage: authority-host plugin <command> [flags]

commands:
  inspect FILE [--key PUB.pem]...   ABI version, exports, imports (grantable or forbidden),
                                    memory, size, sha256, signature status; exit 1 when the
                                    module could never be loaded or its signature is invalid
  verify  FILE --key PUB.pem        exit 0 iff FILE.sig verifies under a key of PUB.pem
  sign    FILE --key PRIV.pem       write FILE.sig (base64 Ed25519 signature of FILE)
  keygen  --out PREFIX              write PREFIX.key (PKCS#8, mode 0600) and PREFIX.pub (PKIX)
  test    FILE --vectors DIR        run the decision vectors DIR/*.json (abi/SPEC.md §8.1)
                                    against FILE under the real runtime; exit 1 on any failure

exit status: 0 success, 1 check failed, 2 usage error
`

// runPlugin implements "authority-host plugin ...".
func runPlugin(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("plugin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, pluginUsage) }
	var keys []string
	fs.Func("key", "PEM key file (repeatable for inspect)", func(s string) error { keys = append(keys, s); return nil })
	vectors := fs.String("vectors", "", "directory of decision vectors (test)")
	out := fs.String("out", "", "output path prefix (keygen)")
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "authority-host plugin %s: %s\n\n%s", cmd, msg, pluginUsage)
		return 2
	}
	needFile := func() (string, bool) {
		if len(pos) != 1 {
			return "", false
		}
		return pos[0], true
	}
	ctx := context.Background()
	switch cmd {
	case "inspect":
		file, ok := needFile()
		if !ok {
			return usageErr("exactly one FILE is required")
		}
		return pluginInspect(ctx, file, keys, stdout, stderr)
	case "verify", "sign":
		file, ok := needFile()
		if !ok || len(keys) != 1 {
			return usageErr("FILE and one --key are required")
		}
		if cmd == "verify" {
			return pluginVerify(file, keys[0], stdout, stderr)
		}
		return pluginSign(file, keys[0], stdout, stderr)
	case "keygen":
		if len(pos) != 0 || *out == "" {
			return usageErr("--out PREFIX is required")
		}
		return pluginKeygen(*out, stdout, stderr)
	case "test":
		file, ok := needFile()
		if !ok || *vectors == "" {
			return usageErr("FILE and --vectors DIR are required")
		}
		return pluginTest(ctx, file, *vectors, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, pluginUsage)
		return 0
	default:
		return usageErr(fmt.Sprintf("unknown command %q", cmd))
	}
}

// parseInterspersed parses flags placed before, between or after the
// positional arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func loadKeys(paths []string) ([]ed25519.PublicKey, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	return plugin.LoadGuildKeys(paths)
}

func pluginInspect(ctx context.Context, file string, keyPaths []string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "inspect:", err)
		return 1
	}
	keys, err := loadKeys(keyPaths)
	if err != nil {
		fmt.Fprintln(stderr, "inspect:", err)
		return 2
	}
	info, err := plugin.Inspect(ctx, b)
	if err != nil {
		fmt.Fprintf(stdout, "module:    %s\nsize:      %d bytes\nsha256:    %s\nstatus:    REFUSED: %v\n", file, len(b), plugin.Digest(b), err)
		return 1
	}
	problems := append([]string(nil), info.Problems...)
	w := func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }
	w("module:    %s\n", file)
	w("size:      %d bytes\n", info.Size)
	w("sha256:    %s\n", info.SHA256)
	if len(info.Problems) == 0 {
		v, err := plugin.ProbeABIVersion(ctx, b, info.MemoryMinPages)
		switch {
		case err != nil:
			w("abi:       unknown (%v)\n", err)
			problems = append(problems, "does not start: "+err.Error())
		case v != abi.Version:
			w("abi:       version %d (host speaks %d)\n", v, abi.Version)
			problems = append(problems, fmt.Sprintf("declares ABI version %d, host speaks %d", v, abi.Version))
		default:
			w("abi:       version %d\n", v)
		}
	} else if hasExport(info, "authority_abi_version") {
		w("abi:       not probed (module refused before instantiation)\n")
	} else {
		w("abi:       none (no authority_abi_version export)\n")
	}
	if hasExport(info, "memory (memory)") {
		max := "none declared (host cap: limits.memoryPages)"
		if info.HasMemoryMax {
			max = fmt.Sprintf("%d pages (%s)", info.MemoryMaxPages, pagesSize(info.MemoryMaxPages))
		}
		w("memory:    min %d pages (%s), max %s\n", info.MemoryMinPages, pagesSize(info.MemoryMinPages), max)
	} else {
		w("memory:    no exported memory \"memory\"\n")
	}
	if len(info.Tables) == 0 {
		w("tables:    none\n")
	}
	for i, t := range info.Tables {
		declared := "no maximum declared"
		if t.HasDeclaredMax {
			declared = fmt.Sprintf("declared maximum %d", t.DeclaredMax)
		}
		w("table %d:   min %d entries, max %d enforced (%s)\n", i, t.Min, t.Max, declared)
	}
	l := info.Limits
	w("limits:    defaults unless configured: memoryPages %d (%s), callTimeout %s = work budget %d units, init budget %d units,\n",
		l.MemoryPages, pagesSize(l.MemoryPages), l.CallTimeout, info.CallBudget, info.InitBudget)
	w("           stack %d units, tables <= %d entries in all, maxModuleBytes %d, maxOutputBytes %d, poolSize %d\n",
		info.StackUnits, info.MaxTableEntries, l.MaxModuleBytes, l.MaxOutputBytes, l.PoolSize)
	w("exports:\n")
	for _, e := range info.Exports {
		w("  %s\n", e)
	}
	w("imports:\n")
	if len(info.Imports) == 0 {
		w("  (none)\n")
	}
	var grants []string
	for _, im := range info.Imports {
		name := im.Module + "." + im.Name
		switch {
		case !im.Allowed:
			w("  %-44s FORBIDDEN: %s\n", name, im.Reason)
		case im.Module == plugin.WASIModule:
			w("  %-44s allowed (WASI subset, provided by the host)\n", name)
		default:
			w("  %-44s grantable (grant %q)\n", name, im.Grant)
			if !contains(grants, im.Grant) {
				grants = append(grants, im.Grant)
			}
		}
	}
	sigOK := true
	i, err := plugin.CheckSignatureFile(file, b, keys)
	switch {
	case errors.Is(err, plugin.ErrNoSignature):
		w("signature: none (no %s%s)\n", file, plugin.SignatureSuffix)
	case err == nil:
		w("signature: valid, by key %d (%s)\n", i, keyFile(keyPaths, keys, i))
	case len(keys) == 0:
		w("signature: present, not verified (pass --key PUB.pem)\n")
	default:
		sigOK = false
		w("signature: INVALID: %v\n", err)
	}
	if len(problems) > 0 {
		w("status:    REFUSED: the host would never load this module:\n")
		for _, p := range problems {
			w("  - %s\n", p)
		}
		return 1
	}
	if !sigOK {
		w("status:    REFUSED: a present signature must verify\n")
		return 1
	}
	sort.Strings(grants)
	if len(grants) == 0 {
		w("status:    loadable (needs no grant)\n")
	} else {
		w("status:    loadable with grants: %s\n", strings.Join(grants, ", "))
	}
	return 0
}

func hasExport(info *plugin.ModuleInfo, name string) bool { return contains(info.Exports, name) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func pagesSize(p uint32) string {
	b := float64(p) * 65536
	if b >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", b/(1<<10))
}

// keyFile names the file key i came from (LoadGuildKeys keeps file order).
func keyFile(paths []string, keys []ed25519.PublicKey, i int) string {
	n := 0
	for _, p := range paths {
		ks, err := plugin.LoadGuildKeys([]string{p})
		if err != nil {
			continue
		}
		if i < n+len(ks) {
			return p
		}
		n += len(ks)
	}
	return "?"
}

func pluginVerify(file, keyPath string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 1
	}
	keys, err := plugin.LoadGuildKeys([]string{keyPath})
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 2
	}
	i, err := plugin.CheckSignatureFile(file, b, keys)
	if err != nil {
		fmt.Fprintf(stdout, "%s: INVALID: %v\n", file, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: signature valid (key %d of %s), sha256 %s\n", file, i, keyPath, plugin.Digest(b))
	return 0
}

func pluginSign(file, keyPath string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "sign:", err)
		return 1
	}
	priv, err := plugin.LoadPrivateKey(keyPath)
	if err != nil {
		fmt.Fprintln(stderr, "sign:", err)
		return 2
	}
	sigPath := file + plugin.SignatureSuffix
	if err := os.WriteFile(sigPath, []byte(plugin.Sign(b, priv)+"\n"), 0o644); err != nil {
		fmt.Fprintln(stderr, "sign:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (sha256 %s)\n", sigPath, plugin.Digest(b))
	return 0
}

func pluginKeygen(prefix string, stdout, stderr io.Writer) int {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(stderr, "keygen:", err)
		return 1
	}
	privPEM, err := plugin.MarshalPrivateKeyPEM(priv)
	if err != nil {
		fmt.Fprintln(stderr, "keygen:", err)
		return 1
	}
	pubPEM, err := plugin.MarshalPublicKeyPEM(pub)
	if err != nil {
		fmt.Fprintln(stderr, "keygen:", err)
		return 1
	}
	// O_EXCL: never overwrite an existing key.
	for _, f := range []struct {
		path string
		b    []byte
		mode os.FileMode
	}{{prefix + ".key", privPEM, 0o600}, {prefix + ".pub", pubPEM, 0o644}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			fmt.Fprintln(stderr, "keygen:", err)
			return 1
		}
		_, err = fh.Write(f.b)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintln(stderr, "keygen:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "wrote %s.key (private, keep secret) and %s.pub (add to the guild keys)\n", prefix, prefix)
	return 0
}
