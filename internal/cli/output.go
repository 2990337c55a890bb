package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// The output modes of -o/--output. --format takes json and table too, or a
// Go template, as docker's does.
const (
	outputTable = "table"
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// outputModes are the values -o accepts.
var outputModes = []string{outputTable, outputWide, outputJSON, outputYAML}

// outputUsage is the help of -o/--output.
const outputUsage = "output format: table, wide (more columns, whole IDs), json or yaml"

// formatUsage is the help of --format.
const formatUsage = "output format: json, yaml, table, wide, or a Go template applied to each object, e.g. '{{.ID}} {{.Name}}';\n" +
	"'table TEMPLATE' aligns columns under a header ('table {{.Name}}\\t{{json .Ipams}}')"

// outputFlagAnnotation marks the commands that take -o/--output.
const outputFlagAnnotation = "hostnet.output"

// addOutputFlag gives cmd its own -o/--output (the root's --output has no
// shorthand, as -o means --opt to `network create`).
func (a *app) addOutputFlag(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().StringVarP(&a.output, "output", "o", "", outputUsage)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputModes, cobra.ShellCompDirectiveNoFileComp))
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[outputFlagAnnotation] = "true"
	return cmd
}

// resolveOutput checks -o and --format and settles the output mode and
// template of the invocation.
func (a *app) resolveOutput() error {
	switch a.output {
	case "", outputTable, outputWide, outputJSON, outputYAML:
	default:
		return fmt.Errorf("invalid --output %q (want %s)", a.output, strings.Join(outputModes, ", "))
	}
	a.mode = a.output
	switch f := strings.TrimSpace(a.format); {
	case f == "":
	case a.output != "" && a.output != f:
		return fmt.Errorf("give -o/--output or --format, not both")
	case f == outputJSON || f == outputTable || f == outputYAML || f == outputWide:
		a.mode = f
	default:
		text, table := strings.CutPrefix(f, "table ")
		if !table {
			text = a.format
		}
		// As docker does: a \t typed in the shell is a tab.
		text = strings.ReplaceAll(text, `\t`, "\t")
		tmpl, err := template.New("format").Funcs(templateFuncs).Parse(text)
		if err != nil {
			return fmt.Errorf("invalid --format template: %w", err)
		}
		a.tmpl, a.tmplTable, a.tmplText = tmpl, table, text
	}
	return nil
}

// outputChosen reports whether the user chose an output (-o or --format).
func (a *app) outputChosen() bool { return a.mode != "" || a.tmpl != nil }

// structured reports whether the output is documents (JSON, YAML) or a
// template rather than text.
func (a *app) structured() bool {
	return a.tmpl != nil || a.mode == outputJSON || a.mode == outputYAML
}

// wantsJSONErrors reports whether failures are to be written as JSON: with
// -o json (or --format json), also when the command line failed to parse
// past it.
func (a *app) wantsJSONErrors() bool {
	return a.mode == outputJSON || a.output == outputJSON || strings.TrimSpace(a.format) == outputJSON
}

// templateFuncs are the functions --format templates may call, as docker's.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSpace(buf.String()), nil
	},
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
}

// render writes v, one object or a slice of them, in the chosen output:
// JSON, YAML, the template (once per element of a slice), or else the
// table that table writes (wide: more columns).
func (a *app) render(v any, table func(wide bool) error) error {
	switch {
	case a.tmpl != nil:
		return a.execTemplate(v)
	case a.mode == outputJSON:
		return writeJSON(a.io.Out, v)
	case a.mode == outputYAML:
		return writeYAML(a.io.Out, v)
	}
	return table(a.mode == outputWide)
}

// execTemplate runs the --format template on v, or on each element of v
// when it is a slice, one line each; a table template aligns the lines
// under a header made of the template's field names.
func (a *app) execTemplate(v any) error {
	var items []any
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		for i := range rv.Len() {
			items = append(items, rv.Index(i).Interface())
		}
	} else {
		items = []any{v}
	}
	var buf bytes.Buffer
	if a.tmplTable {
		buf.WriteString(templateHeader(a.tmplText) + "\n")
	}
	for _, it := range items {
		if err := a.tmpl.Execute(&buf, it); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		buf.WriteString("\n")
	}
	if !a.tmplTable {
		_, err := a.io.Out.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(a.io.Out, 0, 8, 3, ' ', 0)
	if _, err := tw.Write(buf.Bytes()); err != nil {
		return err
	}
	return tw.Flush()
}

var templateField = regexp.MustCompile(`\{\{[^}]*?\.([A-Za-z0-9_]+)[^}]*\}\}`)

// templateHeader turns a table template into its header: each action
// becomes the upper-case name of the last field it names.
func templateHeader(text string) string {
	return templateField.ReplaceAllStringFunc(text, func(action string) string {
		m := templateField.FindStringSubmatch(action)
		return strings.ToUpper(m[1])
	})
}

// writeYAML writes v as YAML with the field names of its JSON form, in its
// order.
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var node yaml.Node
	if err := yaml.Unmarshal(b, &node); err != nil {
		return err
	}
	blockStyle(&node)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle drops the flow style JSON decodes into, keeping the quotes a
// value needs to stay a string.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// jsonError is how a failure is written under -o json: the daemon's
// answer, or the same shape for the CLI's own failures.
type jsonError struct {
	Success   bool   `json:"Success"`
	Error     string `json:"Error"`
	ErrorCode uint32 `json:"ErrorCode,omitempty"`
	ExitCode  int    `json:"ExitCode"`
}

// errorDocument is err as written under -o json.
func errorDocument(err error, code int) jsonError {
	doc := jsonError{Error: err.Error(), ExitCode: code}
	var ue *usageError
	if errors.As(err, &ue) {
		doc.Error = ue.err.Error()
	}
	if c, ok := daemonErrorCode(err); ok {
		doc.ErrorCode = c
	}
	return doc
}
