package main

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/audit/audittest"
)

func TestAuditVerifyHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"audit", "verify", "--help"}, {"audit", "verify", "-h"}, {"audit", "help"}} {
		if code, out, errs := runCmd(t, "", args...); code != 0 || !strings.Contains(out, "verify [--config FILE]") {
			t.Fatalf("%v: %d %q %q", args, code, out, errs)
		}
	}
	if code, _, _ := runCmd(t, "", "audit", "verify"); code != 2 {
		t.Fatalf("verify without a source: exit %d, want 2", code)
	}
	if code, _, errs := runCmd(t, "", "audit", "verify", "--file", "x", "--expect", "n1:7:short"); code != 2 || !strings.Contains(errs, "NODE:SEQ:HASH") {
		t.Fatalf("a bad --expect: exit %d %q, want 2", code, errs)
	}
}

// TestAuditVerifyFileAndEdit: a trail written by a writer verifies under
// its key (exit 0); an edited copy exits 1 naming the record; a foreign
// key does not vouch for it; no key at all is a usage error.
func TestAuditVerifyFileAndEdit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	st, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := audittest.Key(t)
	now := time.Now()
	audittest.WriteChain(t, st, "n1", key, audittest.Events("demo", 5, now), time.Now)
	st.Close()
	keyFile := filepath.Join(dir, "audit.pem")
	if _, err := audit.LoadSigningKey(keyFile, true); err != nil { // a second, foreign key
		t.Fatal(err)
	}
	pub, _ := audit.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	pubFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubFile, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", "audit", "verify", "--file", path, "--key", pubFile)
	if code != 0 || !strings.Contains(out, "OK: every chain verifies") || !strings.Contains(out, "ends with a final checkpoint") {
		t.Fatalf("untouched: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCmd(t, "", "audit", "verify", "--file", path, "--key", keyFile); code != 1 || !strings.Contains(out, "bad-checkpoint") {
		t.Fatalf("foreign key: %d %q", code, out)
	}
	if code, _, _ := runCmd(t, "", "audit", "verify", "--file", path); code != 2 {
		t.Fatalf("no key: exit %d, want 2", code)
	}
	raw, _ := os.ReadFile(path)
	lines := bytes.Split(raw, []byte("\n"))
	lines[3] = bytes.Replace(lines[3], []byte(`"client":"client-2"`), []byte(`"client":"client-x"`), 1)
	edited := filepath.Join(dir, "edited.jsonl")
	if err := os.WriteFile(edited, bytes.Join(lines, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "", "audit", "verify", "--file", edited, "--key", pubFile)
	if code != 1 || !strings.Contains(out, "FAILED: record 4 (node n1, seq 4): edited") {
		t.Fatalf("edited: %d %q", code, out)
	}
	code, out, _ = runCmd(t, "", "audit", "verify", "--file", edited, "--key", pubFile, "--json")
	if code != 1 || !strings.Contains(out, `"kind": "edited"`) {
		t.Fatalf("edited, json: %d %q", code, out)
	}
}

// TestAuditVerifyReportsUnreadableInputs: a key file that is no key, and
// a trail that does not exist, are errors, never a pass.
func TestAuditVerifyReportsUnreadableInputs(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "", "audit", "verify", "--file", filepath.Join(dir, "none.jsonl"), "--key", junk); code != 1 || !strings.Contains(errs, "--key") {
		t.Fatalf("junk key: %d %q", code, errs)
	}
	key := audittest.Key(t)
	pub, _ := audit.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	pubFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubFile, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "", "audit", "verify", "--file", filepath.Join(dir, "none.jsonl"), "--key", pubFile); code != 1 || !strings.Contains(errs, "reading") {
		t.Fatalf("missing trail: %d %q", code, errs)
	}
}
