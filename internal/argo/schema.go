package argo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// APIVersion is the apiVersion of every Argo Events kind.
const APIVersion = "argoproj.io/v1alpha1"

// definitionPrefix is where the schema keeps the Argo Events kinds.
const definitionPrefix = "io.argoproj.events.v1alpha1."

// Kinds lists the Argo Events kinds the schema validates.
var Kinds = []string{"EventBus", "EventSource", "Sensor"}

// schemaURL names the schema resource inside the compiler; the document's own
// $id is an alias for it.
const schemaURL = "file:///argo-events-schema.json"

// Validator checks Argo Events objects against Argo's published JSON schema
// with every object that lists its properties closed, so that a misspelled
// or invented field is an error instead of being silently ignored (the
// installed CRDs preserve unknown fields, so the API server accepts them).
type Validator struct {
	schemas map[string]*jsonschema.Schema
}

// LoadValidator reads the schema file at path and compiles a Validator.
func LoadValidator(path string) (*Validator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open Argo Events schema: %w", err)
	}
	defer f.Close()
	return NewValidator(f)
}

// NewValidator compiles a Validator from the JSON schema that Argo Events
// publishes (api/jsonschema/schema.json in its repository).
func NewValidator(schema io.Reader) (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(schema)
	if err != nil {
		return nil, fmt.Errorf("parse Argo Events schema: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("parse Argo Events schema: the document is not a JSON object")
	}
	defs, ok := root["definitions"].(map[string]any)
	if !ok {
		return nil, errors.New("parse Argo Events schema: no definitions")
	}
	closed := 0
	for _, def := range defs {
		closed += closeObjects(def)
	}
	if closed == 0 {
		return nil, errors.New("parse Argo Events schema: no object schema lists properties")
	}

	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("load Argo Events schema: %w", err)
	}
	v := &Validator{schemas: map[string]*jsonschema.Schema{}}
	for _, kind := range Kinds {
		if _, ok := defs[definitionPrefix+kind]; !ok {
			return nil, fmt.Errorf("Argo Events schema has no definition %s%s", definitionPrefix, kind)
		}
		s, err := c.Compile(schemaURL + "#/definitions/" + definitionPrefix + kind)
		if err != nil {
			return nil, fmt.Errorf("compile Argo Events schema for %s: %w", kind, err)
		}
		v.schemas[kind] = s
	}
	return v, nil
}

// closeObjects sets additionalProperties to false on every schema below s
// that lists properties and says nothing about additional ones, and returns
// how many it closed. It walks only the keywords that hold subschemas, so a
// property that happens to be called "properties" is not mistaken for one.
func closeObjects(s any) int {
	m, ok := s.(map[string]any)
	if !ok {
		return 0
	}
	n := 0
	if props, ok := m["properties"].(map[string]any); ok {
		if _, set := m["additionalProperties"]; !set {
			m["additionalProperties"] = false
			n++
		}
		for _, p := range props {
			n += closeObjects(p)
		}
	}
	for _, key := range []string{"additionalProperties", "items", "not"} {
		n += closeObjects(m[key])
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := m[key].([]any); ok {
			for _, sub := range list {
				n += closeObjects(sub)
			}
		}
	}
	return n
}

// IsArgoKind reports whether an object with this apiVersion and kind is one
// the Validator checks.
func IsArgoKind(apiVersion, kind string) bool {
	if apiVersion != APIVersion {
		return false
	}
	for _, k := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Validate checks one decoded object (as from JSON: maps, slices, strings,
// float64 or json.Number, bools). Objects that are not Argo Events kinds are
// an error: the caller should filter with IsArgoKind.
func (v *Validator) Validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	s, ok := v.schemas[kind]
	if !ok || apiVersion != APIVersion {
		return fmt.Errorf("%s %s is not an Argo Events kind (want apiVersion %s and kind %s)",
			apiVersion, kind, APIVersion, strings.Join(Kinds, ", "))
	}
	// Round-trip through the schema library's own decoder so that numbers
	// are in the form it expects, whatever produced obj.
	raw, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, objectName(obj), err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, objectName(obj), err)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("%s %s: %w", kind, objectName(obj), err)
	}
	return nil
}

func objectName(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	if name == "" {
		if gn, _ := md["generateName"].(string); gn != "" {
			name = gn + "*"
		}
	}
	if ns, _ := md["namespace"].(string); ns != "" {
		return ns + "/" + name
	}
	return name
}

// Document is one YAML document of a manifest file.
type Document struct {
	// File and Index say where the document came from (Index counts from 0).
	File  string
	Index int
	// Object is the decoded document.
	Object map[string]any
}

// Kind returns the document's kind.
func (d Document) Kind() string { k, _ := d.Object["kind"].(string); return k }

// APIVersion returns the document's apiVersion.
func (d Document) APIVersion() string { a, _ := d.Object["apiVersion"].(string); return a }

// ReadDocuments splits a YAML stream into its non-empty documents.
func ReadDocuments(name string, r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 0; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(obj) == 0 {
			continue
		}
		docs = append(docs, Document{File: name, Index: i, Object: obj})
	}
}

// ValidateDocuments validates every Argo Events object among docs and
// returns how many it checked, with one error per invalid object.
func (v *Validator) ValidateDocuments(docs []Document) (int, error) {
	var errs []error
	n := 0
	for _, d := range docs {
		if !IsArgoKind(d.APIVersion(), d.Kind()) {
			continue
		}
		n++
		if err := v.Validate(d.Object); err != nil {
			errs = append(errs, fmt.Errorf("%s (document %d): %w", d.File, d.Index, err))
		}
	}
	return n, errors.Join(errs...)
}

// FindManifests lists the .yaml and .yml files under each root, sorted, so
// that a test can validate every manifest the repository ships.
func FindManifests(roots ...string) ([]string, error) {
	var files []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}
