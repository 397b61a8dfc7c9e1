package audit

// TamperMemory rewrites a MemoryStore's lines in place (tests of Verify);
// each record keeps the index of the line now at its place.
func TamperMemory(m *MemoryStore, f func([][]byte) [][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := make([][]byte, len(m.recs))
	for i, r := range m.recs {
		ls[i] = r.Line
	}
	ls = f(ls)
	out := make([]Sealed, 0, len(ls))
	for _, l := range ls {
		// Find the record this line came from, to move it whole.
		var found bool
		for _, r := range m.recs {
			if string(r.Line) == string(l) {
				out = append(out, r)
				found = true
				break
			}
		}
		if !found { // an edited line: keep no index (as a file would)
			out = append(out, Sealed{Line: l})
		}
	}
	m.recs = out
}
