package testenv

import (
	"errors"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// AppendUID appends msg with flags to mailbox over c and returns the new
// message's UID from APPENDUID (UIDPLUS, which every server here has).
func AppendUID(c *imapclient.Client, mailbox string, msg []byte, flags []imap.Flag) (uint32, error) {
	cmd := c.Append(mailbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
	_, werr := cmd.Write(msg)
	cerr := cmd.Close()
	data, err := cmd.Wait()
	if err := errors.Join(err, werr, cerr); err != nil {
		return 0, err
	}
	if data.UID == 0 {
		return 0, errors.New("no APPENDUID in the response")
	}
	return uint32(data.UID), nil
}

// Capabilities returns what c's server lists as its capabilities (after
// login, if c is logged in), sorted.
func Capabilities(c *imapclient.Client) ([]string, error) {
	caps, err := c.Capability().Wait()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(caps))
	for c := range caps {
		names = append(names, string(c))
	}
	slices.Sort(names)
	return names, nil
}
