package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/sdk/sdktest"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"plugin"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// copyModule copies a module into a temp dir (so .sig files land there).
func copyModule(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func denyrule(t *testing.T) string {
	return copyModule(t, sdktest.Build(t, "../../examples/plugins/denyrule"))
}

func hostile(t *testing.T, name string) string {
	return copyModule(t, filepath.Join("..", "..", "host", "plugin", "testdata", "hostile", name+".wasm"))
}

func wantIn(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestPluginInspectLoadableModule(t *testing.T) {
	wasm := denyrule(t)
	b, _ := os.ReadFile(wasm)
	code, out, errs := runCLI(t, "inspect", wasm)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	wantIn(t, out, "abi:       version 1", "sha256:    "+plugin.Digest(b), "size:      ",
		"authority.config_get", `grantable (grant "config")`, "wasi_snapshot_preview1.fd_write",
		"memory:    min ", "authority_decide", "signature: none", "status:    loadable with grants: config")
}

// TestPluginInspectRefusedModules: any .wasm is reported, and the exit
// status says the host would never load it.
func TestPluginInspectRefusedModules(t *testing.T) {
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("not wasm at all"), 0o644)
	cases := []struct {
		file string
		want []string
	}{
		{hostile(t, "forbidden"), []string{"env.socket", "FORBIDDEN: unknown import module",
			"wasi_snapshot_preview1.path_open", "FORBIDDEN: WASI function outside the allowed subset", "REFUSED"}},
		{hostile(t, "noabi"), []string{"abi:       none (no authority_abi_version export)", "add", "REFUSED", "missing export authority_abi_version"}},
		{hostile(t, "version2"), []string{"abi:       version 2 (host speaks 1)", "REFUSED", "declares ABI version 2"}},
		{notWasm, []string{"REFUSED", "not a valid wasm module"}},
		{hostile(t, "tablemin"), []string{"REFUSED", "refused by the metering pass", "tables declare 134217728 entries"}},
		// Loop-free recursion in _initialize: the probe's instantiation
		// obeys the init budget, so inspect reports it instead of hanging.
		{hostile(t, "binrecinit"), []string{"REFUSED", "does not start", "_initialize: work budget"}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			code, out, errs := runCLI(t, "inspect", c.file)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
			}
			wantIn(t, out, c.want...)
		})
	}
	// Hostile but loadable (the sandbox contains it at run time).
	if code, out, _ := runCLI(t, "inspect", hostile(t, "logflood")); code != 0 {
		t.Fatalf("logflood: exit %d\n%s", code, out)
	} else {
		wantIn(t, out, `authority.log`, `grantable (grant "log")`)
	}
	if code, out, _ := runCLI(t, "inspect", hostile(t, "tablegrow")); code != 0 {
		t.Fatalf("tablegrow: exit %d\n%s", code, out)
	} else {
		wantIn(t, out, "table 0:   min 1 entries, max 65536 enforced (no maximum declared)", "work budget 25000000 units", "stack 10000 units")
	}
}

func TestPluginKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	guild := filepath.Join(dir, "guild")
	if code, out, errs := runCLI(t, "keygen", "--out", guild); code != 0 {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if st, err := os.Stat(guild + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st, err)
	}
	if code, _, _ := runCLI(t, "keygen", "--out", guild); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	other := filepath.Join(dir, "other")
	runCLI(t, "keygen", "--out", other)

	wasm := hostile(t, "good")
	if code, out, _ := runCLI(t, "verify", wasm, "--key", guild+".pub"); code != 1 || !strings.Contains(out, "no signature file") {
		t.Fatalf("verify unsigned: %d %s", code, out)
	}
	if code, out, errs := runCLI(t, "sign", wasm, "--key", guild+".key"); code != 0 || !strings.Contains(out, wasm+".sig") {
		t.Fatalf("sign: %d %s %s", code, out, errs)
	}
	if code, out, _ := runCLI(t, "verify", wasm, "--key", guild+".pub"); code != 0 || !strings.Contains(out, "signature valid") {
		t.Fatalf("verify: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "verify", "--key", other+".pub", wasm); code != 1 || !strings.Contains(out, "INVALID") {
		t.Fatalf("verify with another key: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "inspect", wasm, "--key", other+".pub", "--key", guild+".pub"); code != 0 ||
		!strings.Contains(out, "signature: valid, by key 1 ("+guild+".pub)") {
		t.Fatalf("inspect signed: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "inspect", wasm); code != 0 || !strings.Contains(out, "present, not verified") {
		t.Fatalf("inspect without key: %d %s", code, out)
	}
	// Tamper with the module: verify and inspect refuse it.
	b, _ := os.ReadFile(wasm)
	b[len(b)-1] ^= 1
	os.WriteFile(wasm, b, 0o644)
	if code, out, _ := runCLI(t, "verify", wasm, "--key", guild+".pub"); code != 1 || !strings.Contains(out, "does not verify") {
		t.Fatalf("verify tampered: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "inspect", wasm, "--key", guild+".pub"); code != 1 || !strings.Contains(out, "signature: INVALID") {
		t.Fatalf("inspect tampered: %d %s", code, out)
	}
	// Keys of the wrong kind are usage errors naming the file.
	if code, _, errs := runCLI(t, "sign", wasm, "--key", guild+".pub"); code != 2 || !strings.Contains(errs, guild+".pub") {
		t.Fatalf("sign with public key: %d %s", code, errs)
	}
}

func TestPluginTestVectors(t *testing.T) {
	wasm := denyrule(t)
	code, out, errs := runCLI(t, "test", wasm, "--vectors", "../../examples/plugins/denyrule/vectors")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	wantIn(t, out, "PASS denied client", "PASS allowed: DPoP-bound request with the required scope", ", 0 failed", "(budget: used ")

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "v.json"), []byte(`[
	  {"name": "wrong expectation", "grants": ["config"], "config": {"deniedClients": ["x"]},
	   "input": {"client": "x"}, "want": {"allow": true}},
	  {"name": "right expectation", "grants": ["config"], "config": {"deniedClients": ["x"]},
	   "input": {"client": "x"}, "want": {"allow": false, "status": 403, "error": "access_denied"}},
	  {"name": "grant missing", "grants": [], "input": {"client": "x"}, "want": {"allow": true}}]`), 0o644)
	code, out, _ = runCLI(t, "test", wasm, "--vectors", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	wantIn(t, out, "FAIL wrong expectation: got allow=false status=403", "PASS right expectation",
		"FAIL grant missing", `requires grant "config"`, "3 vectors, 1 passed, 2 failed")

	// A hostile module fails its vectors instead of hanging the tool.
	code, out, _ = runCLI(t, "test", hostile(t, "pollsleep"), "--vectors", "../../examples/plugins/denyrule/vectors")
	if code != 1 || !strings.Contains(out, "timeout") {
		t.Fatalf("pollsleep: exit %d\n%s", code, out)
	}

	os.WriteFile(filepath.Join(dir, "v.json"), []byte(`{"name": "x", "unknown": 1}`), 0o644)
	if code, _, errs := runCLI(t, "test", wasm, "--vectors", dir); code != 2 || !strings.Contains(errs, "unknown") {
		t.Fatalf("unknown field: %d %s", code, errs)
	}
}

func TestPluginUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"inspect"}, {"verify", "x.wasm"}, {"sign", "x.wasm"}, {"test", "x.wasm"}, {"keygen"}, {"frobnicate"}} {
		if code, _, errs := runCLI(t, args...); code != 2 || !strings.Contains(errs, "usage: authority-host plugin") {
			t.Errorf("%v: exit %d %s", args, code, errs)
		}
	}
	if code, out, _ := runCLI(t, "help"); code != 0 || !strings.Contains(out, "plugin test") && !strings.Contains(out, "test    FILE --vectors DIR") {
		t.Errorf("help: %d %s", code, out)
	}
}

// SEC3's vectors (plugins/sec3/vectors) pass against the compiled module,
// and the sequence form is strict: a wrong expectation fails at its step,
// and an ambiguous step is a usage error.
func TestPluginTestSequenceVectors(t *testing.T) {
	wasm := copyModule(t, sdktest.Build(t, "../../plugins/sec3"))
	code, out, errs := runCLI(t, "test", wasm, "--vectors", "../../plugins/sec3/vectors")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	wantIn(t, out, "PASS lockout: a success in between does not reset the count", "PASS store: counters unavailable", ", 0 failed")

	dir := t.TempDir()
	grants := `"grants": ["config", "counters", "pseudonymize", "audit"]`
	os.WriteFile(filepath.Join(dir, "v.json"), []byte(`[
	  {"name": "the second request is refused, not allowed", "config": {"token": {"permitLimit": 1, "window": "1m"}}, `+grants+`,
	   "steps": [{"input": {"client": "c"}, "want": {"allow": true}}, {"input": {"client": "c"}, "want": {"allow": true}}]},
	  {"name": "a lockout records, not nothing", "config": {"lockout": {"maxFailures": 1, "window": "1m", "lockoutDuration": "1m", "by": ["client"]}}, `+grants+`,
	   "steps": [{"event": {"type": "authority.token.denied", "outcome": "failure", "reason": "bad-secret", "client": "c"}, "want": {"records": []}}]},
	  {"name": "the window ends", "config": {"token": {"permitLimit": 1, "window": "1m"}}, `+grants+`,
	   "steps": [{"input": {"client": "c"}, "want": {"allow": true}}, {"advance": "1m"}, {"input": {"client": "c"}, "want": {"allow": true}}]}]`), 0o644)
	code, out, _ = runCLI(t, "test", wasm, "--vectors", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	wantIn(t, out, "FAIL the second request is refused, not allowed: step 2: got allow=false status=429",
		`FAIL a lockout records, not nothing: step 1: the plugin recorded ["authority.lockout.client"], want []`,
		"PASS the window ends", "3 vectors, 1 passed, 2 failed")

	for _, bad := range []string{
		`{"name": "x", "input": {}, "want": {"allow": true}, "steps": [{"input": {}, "want": {"allow": true}}]}`,
		`{"name": "x", "steps": [{"input": {}, "advance": "1s", "want": {"allow": true}}]}`,
		`{"name": "x", "steps": [{"advance": "soon"}]}`,
		`{"name": "x", "steps": [{"event": {"type": "authority.x"}, "want": {"allow": true}}]}`,
		`{"name": "x", "steps": [{"input": {}, "want": {"allow": true, "failed": true}}]}`,
		`{"name": "x", "steps": [{"input": {}}]}`,
		`{"name": "x", "steps": []}`,
		`{"name": "x", "counters": "slow", "input": {}, "want": {"allow": true}}`,
	} {
		os.WriteFile(filepath.Join(dir, "v.json"), []byte(bad), 0o644)
		if code, _, errs := runCLI(t, "test", wasm, "--vectors", dir); code != 2 || !strings.Contains(errs, "v.json") {
			t.Errorf("%s: exit %d %s", bad, code, errs)
		}
	}
}

// SEC5's vectors (plugins/sec5/vectors) pass against the compiled module;
// a decision step's description is compared exactly and its records as an
// event step's are.
func TestPluginTestSEC5Vectors(t *testing.T) {
	wasm := copyModule(t, sdktest.Build(t, "../../plugins/sec5"))
	code, out, errs := runCLI(t, "test", wasm, "--vectors", "../../plugins/sec5/vectors")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	wantIn(t, out, "PASS bypass-outside-drill: inside [start, end) for a listed client only", ", 0 failed")

	dir := t.TempDir()
	grants := `"grants": ["config", "clock", "counters", "audit"]`
	os.WriteFile(filepath.Join(dir, "v.json"), []byte(`[
	  {"name": "another description", "config": {}, `+grants+`,
	   "input": {"client": "c", "senderConstraint": "bypass", "dpop": {"result": "bypass"}},
	   "want": {"allow": false, "description": "sec5 rule bypass-outside-drill"}},
	  {"name": "a refusal records nothing", "config": {}, `+grants+`,
	   "input": {"client": "c", "senderConstraint": "bypass", "dpop": {"result": "bypass"}}, "want": {"allow": false, "records": []}}]`), 0o644)
	code, out, _ = runCLI(t, "test", wasm, "--vectors", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	wantIn(t, out, `FAIL another description: got description "sec5 rule bypass-outside-drill (bypassDrill): no bypass drill is declared`,
		`FAIL a refusal records nothing: the plugin recorded ["authority.security.refused"], want []`, "2 vectors, 0 passed, 2 failed")
}
