package gitinit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// permanentError is a failure that retrying cannot fix; its message is
// already complete.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

func isAuthError(err error) bool {
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		return true
	}
	var hk *hostKeyError
	if errors.As(err, &hk) {
		return true
	}
	return strings.Contains(err.Error(), "unable to authenticate")
}

// isTransient reports whether err may go away by itself: network errors and
// server-side failures. Authentication, missing repositories and missing
// refs are permanent.
func isTransient(err error) bool {
	var perm *permanentError
	var ce *checkoutError
	if errors.As(err, &perm) || errors.As(err, &ce) || isAuthError(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, transport.ErrRepositoryNotFound) || errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return false
	}
	if status := httpStatus(err); status != 0 {
		return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
	}
	if isTLSError(err) {
		return false
	}
	var idle *idleError
	if errors.As(err, &idle) {
		return true
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var ne net.Error
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "unexpected EOF", "i/o timeout", "TLS handshake timeout", "sent no data for"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isTLSError reports a certificate the client does not trust, which no
// retry can fix.
func isTLSError(err error) bool {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}

// httpStatus digs the HTTP status out of go-git's error, 0 if there is none.
func httpStatus(err error) int {
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var he *githttp.Err
	if errors.As(err, &he) && he.Response != nil {
		return he.Response.StatusCode
	}
	return 0
}

// describe turns an error into the one-line reason a user reads in the
// Task's status: what went wrong and what to change.
func describe(err error, url string, haveCredentials bool) string {
	var perm *permanentError
	var hk *hostKeyError
	var ce *checkoutError
	switch {
	case errors.As(err, &perm):
		return perm.msg
	case errors.As(err, &ce):
		return ce.msg
	case errors.As(err, &hk):
		return hk.msg
	case errors.Is(err, transport.ErrAuthenticationRequired) && !haveCredentials:
		return fmt.Sprintf("repository %s requires authentication: set the Git context's secretRef to a Secret with %q and %q (or a token as password)", url, "username", "password")
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Sprintf("authentication to %s failed: check username and password (or token) in the credentials Secret", url)
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Sprintf("access to %s denied: the credentials in the Secret lack read access", url)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Sprintf("SSH authentication to %s failed: the server does not accept ssh-privatekey (or password) of the credentials Secret", url)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Sprintf("repository %s not found (or the credentials cannot see it)", url)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Sprintf("repository %s is empty: it has no commit to check out", url)
	}
	if isTLSError(err) {
		return fmt.Sprintf("TLS certificate of %s is not trusted (%v): the server must present a certificate from a public CA", url, tlsReason(err))
	}
	if status := httpStatus(err); status != 0 {
		return fmt.Sprintf("%s answered HTTP %d %s", url, status, http.StatusText(status))
	}
	return fmt.Sprintf("%s: %v", url, err)
}

func tlsReason(err error) error {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return verr.Err
	}
	return err
}
