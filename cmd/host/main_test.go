package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.org/authority/host/users"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckAcceptsTheExampleConfig(t *testing.T) {
	code, out, errs := runCmd(t, "", "check", "--config", filepath.Join("..", "..", "examples", "authority.yaml"))
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("%d %q %q", code, out, errs)
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
