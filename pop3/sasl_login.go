package pop3

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:" and "Password:" challenges, one
// answer each. go-sasl has only the client side of LOGIN (its server was
// removed as obsolete), but Outlook and many older clients use nothing
// else.
//
// An initial response, which some clients send ("AUTH LOGIN dXNlcg=="), is
// the user name.
type loginServer struct {
	step int // 0: user name wanted, 1: password wanted, 2: done
	user string
	set  func(username, password string)
}

func (s *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		s.user, s.step = string(resp), 1
		return []byte("Password:"), false, nil
	case 1:
		s.step = 2
		s.set(s.user, string(resp))
		return nil, true, nil
	}
	return nil, false, errUnexpectedResponse
}
