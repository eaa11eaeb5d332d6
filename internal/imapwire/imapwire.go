package imapwire

// MarkerTail is how many of a line's last octets (its line end included) a
// reader must keep to see any literal announcement LiteralSize accepts: the
// longest, "~{9223372036854775807+}\r\n", has 25.
const MarkerTail = 32

// LiteralSize reports the size n of the literal that line announces at its
// end: "{n}", "{n+}" (non-synchronising, RFC 7888) or "~{n}" (literal8, RFC
// 3516), where n is decimal digits that fit an int64. line is one line, with
// its CRLF, a bare LF or no line end at all. Anything else, a size too large
// included, is no literal.
func LiteralSize(line []byte) (int64, bool) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	digits := line[:len(line)-1]
	if digits[len(digits)-1] == '+' {
		digits = digits[:len(digits)-1]
	}
	var n int64
	i := len(digits) - 1
	for ; i >= 0 && '0' <= digits[i] && digits[i] <= '9'; i-- {
	}
	if i < 0 || digits[i] != '{' || i == len(digits)-1 {
		return 0, false
	}
	for _, d := range digits[i+1:] {
		v := int64(d - '0')
		if n > (1<<63-1-v)/10 {
			return 0, false // does not fit an int64
		}
		n = n*10 + v
	}
	return n, true
}
