package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Extra holds the top-level fields of a document that this version of the
// schema does not model. They are stored and written back unchanged, so a
// client reads back every field it set, even those hostnet ignores.
type Extra map[string]json.RawMessage

var knownKeysCache sync.Map // reflect.Type -> map[string]bool

// knownKeys returns the lower-cased JSON keys of struct type t, as
// encoding/json matches keys case-insensitively.
func knownKeys(t reflect.Type) map[string]bool {
	if v, ok := knownKeysCache.Load(t); ok {
		return v.(map[string]bool)
	}
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			if tag == "-" {
				continue
			}
			if n, _, _ := strings.Cut(tag, ","); n != "" {
				name = n
			}
		}
		keys[strings.ToLower(name)] = true
	}
	knownKeysCache.Store(t, keys)
	return keys
}

// isKnown reports whether encoding/json decodes key k into one of the
// fields named in known. It matches names with Unicode case folding, not
// only ASCII: "Ipam\u017f" (long s) fills Ipams, so it must not be kept as
// an unknown field too, or it would overwrite Ipams when the document is
// encoded and decoded again, after validation.
func isKnown(known map[string]bool, k string) bool {
	if isASCII(k) {
		// The names are ASCII, and ASCII folds only to ASCII.
		return known[strings.ToLower(k)]
	}
	for name := range known {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// decodeWithExtra decodes data into v (a pointer to a struct without custom
// decoding) and sets *extra to the fields v's type does not know (nil when
// data does not decode): the UnmarshalJSON of the documents that keep
// them.
func decodeWithExtra(data []byte, v any, extra *Extra) error {
	*extra = nil
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	known := knownKeys(reflect.TypeOf(v).Elem())
	return eachMember(data, func(k string, raw []byte) {
		if !isKnown(known, k) {
			if *extra == nil {
				*extra = Extra{}
			}
			(*extra)[k] = append(json.RawMessage(nil), raw...)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// eachMember calls fn with the key and raw value of each member of the
// JSON object data, which must be valid JSON (decoded once already): it
// reads only what it needs, where decoding into a map would copy every
// value. A key repeated is reported each time; the last one wins, as in
// encoding/json.
func eachMember(data []byte, fn func(key string, raw []byte)) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipSpace(data, i+1)
	for i < len(data) && data[i] != '}' {
		end := skipString(data, i)
		key := string(data[i+1 : end-1])
		if bytes.IndexByte(data[i:end], '\\') >= 0 || !utf8.Valid(data[i:end]) {
			if err := json.Unmarshal(data[i:end], &key); err != nil {
				return err
			}
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		vend := skipValue(data, i)
		fn(key, data[i:vend])
		i = skipSpace(data, vend)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// skipValue returns the index after the value that starts at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[i])) {
		i++
	}
	return i
}

// encodeWithExtra encodes v (a struct without custom encoding) and appends
// the extra fields, in key order so the output is deterministic.
func encodeWithExtra(v any, extra Extra) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for i, k := range keys {
		if i > 0 || len(b) > 2 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
