package grants

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinSecretLen is the shortest secret a Sealer takes: 32 bytes, e.g.
// `head -c 32 /dev/urandom | base64 > secret` (44 characters).
const MinSecretLen = 32

// ErrUnsealable means a sealed grant does not open: another secret sealed
// it (state.secret_file changed), or its bytes were altered or moved to
// another user's row.
var ErrUnsealable = errors.New("grants: the sealed grant does not open with this secret (state.secret_file changed, or the record was altered)")

// sealVersion is the first byte of every sealed grant: the format, so that
// a later one (another cipher, key rotation) can tell old records apart.
const sealVersion = 1

// Sealer encrypts and decrypts grants. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the grant key from secret (at least MinSecretLen
// bytes). The derivation, rather than the secret used as the key, lets the
// file hold any text of enough entropy and keeps this key apart from any
// other use of the same secret.
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("grants: the secret is %d bytes, at least %d are needed", len(secret), MinSecretLen)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "popbridge oauth2 grants v1", 32)
	if err != nil {
		return nil, fmt.Errorf("grants: derive the key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadSealer reads the secret from path (state.secret_file); surrounding
// white space is not part of it. A file that others than its owner may
// read is refused: whoever reads it reads every grant.
func LoadSealer(path string) (*Sealer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("grants: state.secret_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("grants: state.secret_file %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("grants: state.secret_file: %w", err)
	}
	s, err := NewSealer([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("state.secret_file %s: %w", path, err)
	}
	return s, nil
}

// additionalData binds a sealed grant to its key: each part length-
// prefixed, so that no two keys give the same bytes.
func additionalData(k Key) []byte {
	b := []byte("popbridge grant\x00")
	for _, part := range []string{k.Upstream, k.User} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// Seal encrypts g for k: version byte, random 96-bit nonce, ciphertext.
func (s *Sealer) Seal(k Key, g Grant) ([]byte, error) {
	plain, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("grants: encode: %w", err)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return s.aead.Seal(out, out[1:], plain, additionalData(k)), nil
}

// Open decrypts what Seal made for k; ErrUnsealable if it does not open.
func (s *Sealer) Open(k Key, sealed []byte) (Grant, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return Grant{}, fmt.Errorf("%w: unknown format", ErrUnsealable)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additionalData(k))
	if err != nil {
		return Grant{}, ErrUnsealable
	}
	var g Grant
	if err := json.Unmarshal(plain, &g); err != nil {
		return Grant{}, fmt.Errorf("grants: decode: %w", err)
	}
	return g, nil
}
