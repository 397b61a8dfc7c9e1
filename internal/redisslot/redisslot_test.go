package redisslot

import "testing"

// The specification's examples and values CLUSTER KEYSLOT gives.
func TestSlotMatchesRedis(t *testing.T) {
	if c := crc16("123456789"); c != 0x31C3 {
		t.Fatalf("crc16 check value %#x, want 0x31c3", c)
	}
	for key, want := range map[string]int{
		"foo":                  12182,
		"bar":                  5061,
		"{user1000}.following": Slot("user1000"),
		"{user1000}.followers": Slot("user1000"),
		"foo{}{bar}":           Slot("foo{}{bar}"), // empty first tag: the whole key
		"foo{{bar}}zap":        Slot("{bar"),
		"foo{bar}{zap}":        Slot("bar"),
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Tag("foo{}{bar}") != "foo{}{bar}" || Tag("a{b}c") != "b" || Tag("{") != "{" {
		t.Fatal("Tag")
	}
}
