package configdoc

import (
	"errors"
	"testing"
)

func TestProblemsNameTheirKeys(t *testing.T) {
	p := New("sec9")
	if p.Err() != nil {
		t.Fatal("no problems, an error")
	}
	p.UnknownKeys([]byte(`{"b": 1, "window": 2, "a": 3}`), "limit.", "window")
	p.UnknownKeys([]byte(`[1, 2]`), "", "x") // not an object: the caller's to report
	p.Add("limit.window", "must be at least %s, got %q", "1s", "0s")
	err := p.Err()
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 3 || p.Len() != 3 {
		t.Fatalf("got %v", err)
	}
	want := `sec9: invalid configuration: limit.a: unknown key (known: window); limit.b: unknown key (known: window); limit.window: must be at least 1s, got "0s"`
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}
