package audit

import "testing"

// A plugin's subject, address and user agent stay as emitted only when
// they are pseudonyms or networks no longer than /24 or /64; the host
// pseudonymizes anything else.
func TestPluginValuesKeptOnlyWhenPseudonymized(t *testing.T) {
	for v, kept := range map[string]bool{
		"Y1ukl2Aj94tGP3qaVeEvInC8loJqfhZNbk23LgZJYdQ": true,  // a pseudonym
		"alice_smith_employee_0000012345_example_co1": false, // 43 bytes, not canonical base64url
		"203.0.113.0/24":         true,
		"10.0.0.0/8":             true,
		"203.0.113.6/31":         false, // nearly the address
		"203.0.113.7/32":         false,
		"203.0.113.7":            false,
		"2001:db8:1::/48":        true,
		"2001:db8:1:2::/64":      true,
		"2001:db8:1:2::/127":     false,
		"::ffff:203.0.113.0/120": false, // IPv4-mapped
		"203.0.113.5/24":         false, // host bits set
		"alice":                  false,
	} {
		if got := looksPseudonymized(v); got != kept {
			t.Errorf("%q: kept %v, want %v", v, got, kept)
		}
	}
	r, err := NewRecord(Event{Source: "plugin:p", Type: "authority.token.issued", Tenant: "t", Subject: "alice",
		RemoteAddr: "203.0.113.0/24", UserAgent: "curl/8"}, prefixPseudonyms{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "P(alice)" || r.Network.IP != "203.0.113.0/24" || r.Network.UserAgent != "P(curl/8)" {
		t.Fatalf("%+v %+v", r, r.Network)
	}
}

type prefixPseudonyms struct{}

func (prefixPseudonyms) Pseudonym(_, v string) (string, error) { return "P(" + v + ")", nil }
func (prefixPseudonyms) Network(_, v string) (string, error)   { return "N(" + v + ")", nil }
