package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"stellaops.org/authority/host/users"
	"stellaops.org/authority/sdk/sdktest"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// exampleDir is a working directory laid out as `make run` sees the
// repository: examples/authority.yaml and the plugins it pins under
// bin/plugins (built from source, reproducibly), so that its relative
// paths resolve and what serve creates at start (var/) lands in a temp
// directory. edit changes the configuration text.
func exampleDir(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "authority.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	if edit != nil {
		doc = edit(doc)
	}
	for _, p := range []string{"examples", "bin/plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "examples", "authority.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sec3", "sec5"} {
		b, err := os.ReadFile(sdktest.Build(t, filepath.Join("..", "..", "plugins", name)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", "plugins", name+".wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// check builds the Authority of the example (edited) from its directory,
// as `make run` would serve it.
func check(t *testing.T, edit func(string) string) (int, string, string) {
	t.Helper()
	t.Chdir(exampleDir(t, edit))
	return runCmd(t, "", "check", "--config", filepath.Join("examples", "authority.yaml"))
}

func TestCheckAcceptsTheExampleConfig(t *testing.T) {
	code, out, errs := check(t, nil)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("%d %q %q", code, out, errs)
	}
}

// check refuses what serve would refuse at start, though the file is
// valid YAML and every key's value is well-formed: a plugin whose pinned
// digest does not match the module, a missing TLS certificate, a tenant
// trust root that does not exist, a plugin module that is not there.
func TestCheckRefusesWhatServeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"plugin digest", func(d string) string {
			return regexp.MustCompile(`sha256: [0-9a-f]{64}`).ReplaceAllString(d, "sha256: "+strings.Repeat("0", 64))
		}, "sha256 mismatch"},
		{"missing plugin module", func(d string) string {
			return strings.Replace(d, "path: bin/plugins/sec3.wasm", "path: bin/plugins/nowhere.wasm", 1)
		}, "nowhere.wasm"},
		{"missing TLS certificate", func(d string) string {
			return strings.Replace(d, "tls:\n", "tls:\n  certFile: /nonexistent/server.crt\n  keyFile: /nonexistent/server.key\n", 1)
		}, "tls.certFile"},
		{"missing trust root", func(d string) string {
			return strings.Replace(d, "    # No trustRoots: with tls.devPki the development CA is trusted.\n",
				"    trustRoots: [/nonexistent/ca.pem]\n", 1)
		}, "/nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := check(t, tc.edit)
			if code != 1 || !strings.Contains(errs, tc.want) {
				t.Fatalf("%d %q %q", code, out, errs)
			}
		})
	}
}

func TestCheckRefusesABadConfigNamingTheKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.yaml")
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "authority.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(raw), "replayWindow: 90s", "replayWindow: 5s", 1)
	if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "", "check", "--config", p)
	if code != 1 || !strings.Contains(errs, "security.senderConstraints.dpop.replayWindow:") {
		t.Fatalf("%d %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := runCmd(t, ""); code != 2 {
		t.Fatal("no command must exit 2")
	}
	if code, _, errs := runCmd(t, "", "serve"); code != 2 || !strings.Contains(errs, "--config is required") {
		t.Fatalf("serve without --config: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "bogus"); code != 2 {
		t.Fatal("unknown command must exit 2")
	}
}

func TestHashPassword(t *testing.T) {
	code, out, _ := runCmd(t, "alice-password\n", "hash-password", "--memory-kib", "7168", "--iterations", "5")
	h, err := users.ParsePHC(strings.TrimSpace(out))
	if code != 0 || err != nil || !h.Matches([]byte("alice-password")) || h.MemoryKiB != 7168 || h.Iterations != 5 {
		t.Fatalf("%d %q %v", code, out, err)
	}
	if code, _, errs := runCmd(t, "", "hash-password", "--help"); code != 0 || !strings.Contains(errs, "usage: authority-host hash-password") {
		t.Fatalf("--help exits %d: %q", code, errs)
	}
	if code, _, errs := runCmd(t, "pw\n", "hash-password", "--memory-kib", "1024"); code != 1 || !strings.Contains(errs, "memoryKiB") {
		t.Fatalf("a cost below the OWASP floor: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "hash-password"); code != 1 {
		t.Fatal("an empty password must be refused")
	}
}

func TestHashSecret(t *testing.T) {
	code, out, _ := runCmd(t, "demo-bearer-secret\n", "hash-secret")
	if code != 0 || strings.TrimSpace(out) != "sha256:b8c219274beea7b2dc1e24ad8fc6ac58c77f7de06c8a902d1690d890ca8ff93f" {
		t.Fatalf("%d %q", code, out)
	}
	if code, _, _ := runCmd(t, "short\n", "hash-secret"); code != 1 {
		t.Fatal("short secrets must be refused")
	}
}
