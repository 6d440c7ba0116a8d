package gitinit

import (
	"io"
	"net/url"
	"strings"
)

// redactor replaces known secrets with a placeholder.
type redactor struct{ secrets []string }

// secret registers s; very short values are ignored because replacing
// them would garble ordinary text while protecting nothing.
func (r *redactor) secret(s string) {
	if len(s) >= 4 {
		r.secrets = append(r.secrets, s)
	}
}

// add registers the password of a URL, raw and URL-encoded.
func (r *redactor) add(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return
	}
	if p, ok := u.User.Password(); ok {
		r.secret(p)
		r.secret(url.QueryEscape(p))
		r.secret(url.PathEscape(p))
	}
}

func (r *redactor) redact(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "xxxxx")
	}
	return s
}

// redactingWriter redacts whole lines; callers write one line at a time.
type redactingWriter struct {
	w io.Writer
	r *redactor
}

func (w *redactingWriter) Write(p []byte) (int, error) {
	if len(w.r.secrets) == 0 {
		return w.w.Write(p)
	}
	if _, err := io.WriteString(w.w, w.r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
