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
// the last "@" before the path, query or fragment starts, as URL parsers
// take it, so that a password holding an unencoded "@" is redacted whole.
var urlUserinfo = regexp.MustCompile(`\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]+@`)

// Redactor removes credentials from text: the values of the environment
// variables whose names say they are credentials, and the userinfo of
// URLs. A nil Redactor removes URL userinfo only.
type Redactor struct {
	// values are the credentials, longest first.
	values []string
}

// NewRedactor redacts the credentials of environ (os.Environ's form): the
// values, at least MinSecretLen bytes long, of the variables that
// contract.EnvCredentialNames names (the Agent's credentials, whatever they
// are called) and of those whose names contain KEY, TOKEN, SECRET, PASSWORD
// or CREDENTIAL in any case. A value is also found in its JSON-escaped
// forms, as it appears in a tool call's input (with and without the HTML
// escapes of "<", ">" and "&"), and a value of several lines (a private
// key) line by line too, as a program printing it line by line shows it.
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
	addForms := func(v string) {
		add(v)
		add(jsonEscaped(v, true))
		add(jsonEscaped(v, false))
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		// The list of credential names is no credential.
		if !ok || name == contract.EnvCredentialNames || !(credentials[name] || isSecretName(name)) {
			continue
		}
		addForms(value)
		if strings.Contains(value, "\n") {
			for _, l := range strings.Split(value, "\n") {
				addForms(strings.TrimSpace(l))
			}
		}
	}
	sort.Slice(values, func(i, j int) bool {
		if len(values[i]) != len(values[j]) {
			return len(values[i]) > len(values[j])
		}
		return values[i] < values[j]
	})
	return &Redactor{values: values}
}

// jsonEscaped is v as a JSON string's content.
func jsonEscaped(v string, escapeHTML bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if enc.Encode(v) != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(b.String(), "\n"), `"`), `"`)
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
	if r != nil && len(r.values) > 0 {
		s = r.redactValues(s)
	}
	if strings.Contains(s, "@") {
		s = urlUserinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	}
	return s
}

// redactValues replaces every stretch of s that some credential covers
// with one Redacted. Credentials that overlap in s (the end of one is the
// start of another) are redacted together: replacing one first would leave
// the rest of the other.
func (r *Redactor) redactValues(s string) string {
	var covered []bool
	for _, v := range r.values {
		for from := 0; from <= len(s)-len(v); {
			i := strings.Index(s[from:], v)
			if i < 0 {
				break
			}
			if covered == nil {
				covered = make([]bool, len(s))
			}
			for j := from + i; j < from+i+len(v); j++ {
				covered[j] = true
			}
			from += i + 1
		}
	}
	if covered == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(s) && covered[i] {
			i++
		}
	}
	return b.String()
}
