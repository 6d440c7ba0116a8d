package opencode

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Redacted replaces a credential in everything the launcher prints.
const Redacted = "[redacted]"

// MinSecretLen is the shortest environment value taken as a credential:
// shorter values ("1", "true") would redact ordinary words.
const MinSecretLen = 8

// secretNames are the parts of an environment variable's name (in any
// case) that mark its value as a credential.
var secretNames = []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"}

// urlUserinfo matches the userinfo of a URL ("scheme://user:pass@"): up to
// the first "@" before the path, query or fragment starts.
var urlUserinfo = regexp.MustCompile(`\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]+@`)

// Redactor removes credentials from text: the values of the environment
// variables whose names say they are credentials, and the userinfo of
// URLs. A nil Redactor removes URL userinfo only.
type Redactor struct {
	values *strings.Replacer
}

// NewRedactor redacts the credentials of environ (os.Environ's form): the
// values, at least MinSecretLen bytes long, of the variables that
// contract.EnvCredentialNames names (the Agent's credentials, whatever they
// are called) and of those whose names contain KEY, TOKEN, SECRET, PASSWORD
// or CREDENTIAL in any case. A value is also found in its JSON-escaped
// form, as it appears in a tool call's input.
func NewRedactor(environ []string) *Redactor {
	credentials := map[string]bool{}
	for _, kv := range environ {
		if names, ok := strings.CutPrefix(kv, contract.EnvCredentialNames+"="); ok {
			for _, n := range strings.Split(names, ",") {
				credentials[strings.TrimSpace(n)] = true
			}
		}
	}
	seen := map[string]bool{}
	var values []string
	add := func(v string) {
		if len(v) >= MinSecretLen && !seen[v] {
			seen[v] = true
			values = append(values, v)
		}
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !(credentials[name] || isSecretName(name)) {
			continue
		}
		add(value)
		if q, err := json.Marshal(value); err == nil {
			add(strings.TrimSuffix(strings.TrimPrefix(string(q), `"`), `"`))
		}
	}
	r := &Redactor{}
	if len(values) == 0 {
		return r
	}
	// strings.Replacer tries its old strings in argument order at each
	// position: the longest first, so that a value holding another is
	// redacted whole.
	sort.Slice(values, func(i, j int) bool {
		if len(values[i]) != len(values[j]) {
			return len(values[i]) > len(values[j])
		}
		return values[i] < values[j]
	})
	pairs := make([]string, 0, 2*len(values))
	for _, v := range values {
		pairs = append(pairs, v, Redacted)
	}
	r.values = strings.NewReplacer(pairs...)
	return r
}

func isSecretName(name string) bool {
	upper := strings.ToUpper(name)
	for _, s := range secretNames {
		if strings.Contains(upper, s) {
			return true
		}
	}
	return false
}

// Redact returns s without the credentials r knows and without the
// userinfo of URLs ("https://user:pass@host" becomes
// "https://[redacted]@host").
func (r *Redactor) Redact(s string) string {
	if r != nil && r.values != nil {
		s = r.values.Replace(s)
	}
	if strings.Contains(s, "@") {
		s = urlUserinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	}
	return s
}
