package main

import "testing"

func TestTruncateAddr(t *testing.T) {
	cases := []struct {
		in         string
		v4, v6     int
		want       string
		wantParsed bool
	}{
		{"203.0.113.77", 24, 48, "203.0.113.0/24", true},
		{"203.0.113.77", 16, 48, "203.0.0.0/16", true},
		{"203.0.113.77", 8, 48, "203.0.0.0/8", true},
		{"203.0.113.77", 32, 48, "203.0.113.77/32", true},
		{"203.0.113.77", 25, 48, "203.0.113.0/25", true},
		{"203.0.113.200", 25, 48, "203.0.113.128/25", true},
		{"2001:db8:1:2::5", 24, 48, "2001:db8:1::/48", true},
		{"2001:db8:1:2::5", 24, 64, "2001:db8:1:2::/64", true},
		{"2001:db8:1:2::5", 24, 16, "2001::/16", true},
		{"2001:db8:1:2::5", 24, 128, "2001:db8:1:2::5/128", true},
		{"2001:DB8:1:2::5", 24, 48, "2001:db8:1::/48", true},
		{"::ffff:203.0.113.77", 24, 48, "203.0.113.0/24", true}, // IPv4-mapped counts as IPv4
		{"fe80::1%eth0", 24, 48, "fe80::/48", true},             // zone dropped
		{"203.0.113.77:51234", 24, 48, "203.0.113.0/24", true},  // port dropped
		{"[2001:db8:1:2::5]:443", 24, 48, "2001:db8:1::/48", true},
		{"::1", 24, 48, "::/48", true},
		{"127.0.0.1", 24, 48, "127.0.0.0/24", true},
		{"", 24, 48, "", false},
		{"not-an-address", 24, 48, "", false},
		{"203.0.113", 24, 48, "", false},
		{"203.0.113.256", 24, 48, "", false},
		{"@", 24, 48, "", false},
		{"203.0.113.77/24", 24, 48, "", false},
		{" 203.0.113.77", 24, 48, "", false},
		{"unix:/run/authority.sock", 24, 48, "", false},
	}
	for _, c := range cases {
		got, ok := truncateAddr(c.in, c.v4, c.v6)
		if got != c.want || ok != c.wantParsed {
			t.Errorf("truncateAddr(%q, %d, %d) = %q, %v; want %q, %v", c.in, c.v4, c.v6, got, ok, c.want, c.wantParsed)
		}
	}
}
