package oauth2user_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/oauth2user"
)

func TestObserveRefreshes(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	var counted []grants.Outcome
	observe := oauth2user.ObserveRefreshes(zap.New(core), func(_ grants.Key, o grants.Outcome, _ error) { counted = append(counted, o) })
	k := grants.Key{Upstream: "outlook.office365.com:993", User: "alice@example.org"}
	observe(k, grants.Refreshed, nil)
	observe(k, grants.Revoked, errors.New("invalid_grant: AADSTS700082"))
	if len(counted) != 2 || counted[1] != grants.Revoked {
		t.Fatalf("counted %v", counted)
	}
	warn := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warn) != 1 || warn[0].Message != "oauth2 grant refused by the provider: run popbridge oauth2 enroll alice@example.org" ||
		warn[0].ContextMap()["user"] != k.User {
		t.Fatalf("warnings %+v", warn)
	}
	if logs.FilterLevelExact(zapcore.DebugLevel).Len() != 1 {
		t.Fatal("the refresh was not logged at debug level")
	}
	// App-only access refused: the administrator's configuration, not the
	// user's enrolment.
	observe(grants.Key{Upstream: k.Upstream}, grants.Revoked, fmt.Errorf("%w: invalid_client", grants.ErrAppRefused))
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "app-only access refused") || strings.Contains(errs[0].Message, "enroll") {
		t.Fatalf("errors %+v", errs)
	}
}
