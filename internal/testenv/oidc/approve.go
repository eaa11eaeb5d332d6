package oidc

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// ErrPageChanged means a device page did not have the form or button the
// approval goes by: the example's templates changed.
var ErrPageChanged = errors.New("oidc: the provider's device page is not as expected")

var (
	formAction    = regexp.MustCompile(`<form method="POST" action="([^"]+)"`)
	userCodeIn    = regexp.MustCompile(`name="user_code" value="([^"]*)"`)
	authRequestIn = regexp.MustCompile(`name="id" value="([^"]*)"`)
	buttonHref    = regexp.MustCompile(`location\.href='([^']+)'`)
	pageMessage   = regexp.MustCompile(`<p style="color:red[^"]*">([^<]*)</p>`)
)

// ApproveDevice does what the user does with the URL and code that the
// device flow printed: opens verificationURIComplete, signs in as user with
// password, and presses Allow, all through the provider's own pages.
func (s *Server) ApproveDevice(ctx context.Context, verificationURIComplete, user, password string) error {
	return s.answerDevice(ctx, verificationURIComplete, user, password, "allowed")
}

// DenyDevice is ApproveDevice pressing Deny.
func (s *Server) DenyDevice(ctx context.Context, verificationURIComplete, user, password string) error {
	return s.answerDevice(ctx, verificationURIComplete, user, password, "denied")
}

func (s *Server) answerDevice(ctx context.Context, pageURL, user, password, action string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("oidc: cookie jar: %w", err)
	}
	browser := &http.Client{Jar: jar}

	// The sign-in form, with the user code filled in from the URL.
	page, at, err := get(ctx, browser, http.MethodGet, pageURL, nil)
	if err != nil {
		return err
	}
	action1, code := formAction.FindStringSubmatch(page), userCodeIn.FindStringSubmatch(page)
	if action1 == nil || code == nil {
		return fmt.Errorf("%w: no sign-in form at %s", ErrPageChanged, pageURL)
	}
	loginURL, err := at.Parse(html.UnescapeString(action1[1]))
	if err != nil {
		return fmt.Errorf("oidc: sign-in form: %w", err)
	}
	form := url.Values{"user_code": {html.UnescapeString(code[1])}, "username": {user}, "password": {password}}
	page, at, err = get(ctx, browser, http.MethodPost, loginURL.String(), form)
	if err != nil {
		return err
	}

	// The consent page: Allow and Deny buttons. A failed sign-in lands back
	// on the code page with the reason.
	var target *url.URL
	for _, m := range buttonHref.FindAllStringSubmatch(page, -1) {
		if strings.HasSuffix(m[1], "action="+action) {
			if target, err = at.Parse(html.UnescapeString(m[1])); err != nil {
				return fmt.Errorf("oidc: consent page: %w", err)
			}
		}
	}
	if target == nil {
		if m := pageMessage.FindStringSubmatch(page); m != nil && strings.TrimSpace(m[1]) != "" {
			return fmt.Errorf("oidc: sign-in as %s refused: %s", user, html.UnescapeString(m[1]))
		}
		return fmt.Errorf("%w: no %s button after signing in", ErrPageChanged, action)
	}
	page, _, err = get(ctx, browser, http.MethodGet, target.String(), nil)
	if err != nil {
		return err
	}
	if !strings.Contains(page, "Device authorization "+action) {
		return fmt.Errorf("oidc: the provider did not confirm %s: %q", action, page)
	}
	return nil
}

// get fetches a page (following redirects) and returns its text and the
// URL it ended at.
func get(ctx context.Context, c *http.Client, method, u string, form url.Values) (string, *url.URL, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return "", nil, fmt.Errorf("oidc: %s %s: %w", method, u, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("oidc: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, fmt.Errorf("oidc: %s %s: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("oidc: %s %s: %s", method, u, resp.Status)
	}
	return string(b), resp.Request.URL, nil
}

// ApproveAuthCode does what a person does with an authorization URL of the
// code flow: opens it, signs in as user with password on the provider's
// login page, and is sent to the client's redirect URI with the code. The
// browser goes no further: the redirect URI's address is returned, as the
// person would copy it from the address bar (nothing needs to listen there).
func (s *Server) ApproveAuthCode(ctx context.Context, authURL, user, password string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", fmt.Errorf("oidc: cookie jar: %w", err)
	}
	issuer, err := url.Parse(s.Issuer)
	if err != nil {
		return "", err
	}
	var redirected string
	browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host != issuer.Host {
			redirected = req.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}}
	page, at, err := get(ctx, browser, http.MethodGet, authURL, nil)
	if err != nil {
		return "", err
	}
	action, id := formAction.FindStringSubmatch(page), authRequestIn.FindStringSubmatch(page)
	if action == nil || id == nil {
		return "", fmt.Errorf("%w: no login form at %s", ErrPageChanged, at)
	}
	loginURL, err := at.Parse(html.UnescapeString(action[1]))
	if err != nil {
		return "", fmt.Errorf("oidc: login form: %w", err)
	}
	form := url.Values{"id": {html.UnescapeString(id[1])}, "username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, loginURL.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := browser.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc: sign in: %w", err)
	}
	resp.Body.Close()
	if redirected == "" {
		return "", fmt.Errorf("oidc: sign-in as %s was not sent back to the client (%s)", user, resp.Status)
	}
	return redirected, nil
}
