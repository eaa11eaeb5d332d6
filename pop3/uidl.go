package pop3

// ValidUIDL reports whether s is a unique-id as RFC 1939 section 7 allows:
// 1 to 70 octets in 0x21-0x7E.
func ValidUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
