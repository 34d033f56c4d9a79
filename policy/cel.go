package policy

import (
	"fmt"
	"regexp"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/interpreter"

	"gatehouse/xmpp/stanza"
)

// CEL expressions (github.com/google/cel-go) narrow a rule beyond its
// selectors: `cel: "size(body) > 2000 && zone == 'transport'"`. They are
// compiled and type-checked when the policy loads and evaluated only for
// crossings the rule's selectors already matched, so rules without one
// cost nothing. The variables are documented in docs/policy.md#cel.

// celCostLimit bounds one evaluation (CEL's abstract cost units), so no
// expression can stall the stanza path.
const celCostLimit = 100_000

// celVarNames are the variables an expression may use.
var celVarNames = []string{"direction", "zone", "local", "user", "groups", "peer", "peer_domain", "kind", "stanza_type",
	"body", "subject", "file_names", "file_types", "file_size", "now"}

func newCELEnv() (*cel.Env, error) {
	str := cel.StringType
	return cel.NewEnv(
		cel.Variable("direction", str), cel.Variable("zone", str),
		cel.Variable("local", str), cel.Variable("user", str), cel.Variable("groups", cel.ListType(str)),
		cel.Variable("peer", str), cel.Variable("peer_domain", str),
		cel.Variable("kind", str), cel.Variable("stanza_type", str), cel.Variable("body", str), cel.Variable("subject", str),
		cel.Variable("file_names", cel.ListType(str)), cel.Variable("file_types", cel.ListType(str)),
		cel.Variable("file_size", cel.IntType), cel.Variable("now", cel.TimestampType),
	)
}

// celRule is a compiled expression.
type celRule struct {
	src string
	prg cel.Program
}

// reCELString finds string literals: group names an expression tests
// with `'sales' in groups` must be loaded with the memberships.
var reCELString = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"`)

// cel compiles a rule's expression; nil when there is none.
func (c *compiler) cel(path, src string) *celRule {
	if src == "" {
		return nil
	}
	if c.celEnv == nil {
		env, err := newCELEnv()
		if err != nil {
			c.fail(path+".cel", "the CEL environment: %v", err)
			return nil
		}
		c.celEnv = env
	}
	ast, iss := c.celEnv.Compile(src)
	if iss.Err() != nil {
		c.fail(path+".cel", "%v", iss.Err())
		return nil
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		c.fail(path+".cel", "the expression is %s, it must be a bool", ast.OutputType())
		return nil
	}
	prg, err := c.celEnv.Program(ast, cel.CostLimit(celCostLimit))
	if err != nil {
		c.fail(path+".cel", "%v", err)
		return nil
	}
	for _, m := range reCELString.FindAllStringSubmatch(src, -1) {
		name := m[1] + m[2]
		if name == "" || !reID.MatchString(name) {
			continue
		}
		if _, ok := c.p.groupIdx[name]; !ok && len(c.p.groups) < maxSets {
			c.p.groupIdx[name] = len(c.p.groups)
			c.p.groups = append(c.p.groups, name)
			c.p.celGroups[name] = true
		}
	}
	return &celRule{src: src, prg: prg}
}

// match evaluates the expression; an evaluation error (cost limit, a
// missing map key) counts as no match.
func (r *celRule) match(p *Policy, st *stanza.Stanza, x *crossing, s *scratch) bool {
	out, _, err := r.prg.Eval(&celVars{p: p, st: st, x: x, s: s})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// celVars resolves the variables lazily from the crossing.
type celVars struct {
	p  *Policy
	st *stanza.Stanza
	x  *crossing
	s  *scratch
}

var _ interpreter.Activation = (*celVars)(nil)

// Parent implements interpreter.Activation.
func (v *celVars) Parent() interpreter.Activation { return nil }

// ResolveName implements interpreter.Activation.
func (v *celVars) ResolveName(name string) (any, bool) {
	st, x := v.st, v.x
	if st == nil {
		// An upload: no stanza.
		st = &stanza.Stanza{}
	}
	switch name {
	case "direction":
		return x.dir.String(), true
	case "zone":
		return x.zone.String(), true
	case "local":
		if x.local.Localpart() == "" {
			return "", true
		}
		return x.local.Bare().String(), true
	case "user":
		return x.local.Localpart(), true
	case "groups":
		var out []string
		if x.groups != nil {
			for i, g := range v.p.groups {
				if x.groups.has(i) {
					out = append(out, g)
				}
			}
		}
		return out, true
	case "peer":
		return x.remote.Bare().String(), true
	case "peer_domain":
		return x.remote.Domainpart(), true
	case "kind":
		if v.st == nil {
			return "upload", true
		}
		return st.Kind.String(), true
	case "stanza_type":
		return typeOf(st), true
	case "body":
		return st.Body(), true
	case "subject":
		if st.Kind == stanza.KindMessage {
			if e := st.Child("", "subject"); e != nil {
				return e.Text(), true
			}
		}
		return "", true
	case "file_names", "file_types":
		out := []string{}
		for i := range v.s.offers {
			o := &v.s.offers[i]
			if name == "file_names" && o.Name != "" {
				out = append(out, o.Name)
			}
			if name == "file_types" && o.MediaType != "" {
				out = append(out, o.MediaType)
			}
		}
		return out, true
	case "file_size":
		size := int64(-1)
		for i := range v.s.offers {
			size = max(size, v.s.offers[i].Size)
		}
		return size, true
	case "now":
		return x.now.UTC(), true
	}
	return nil, false
}

// typeOf is the stanza type with RFC 6120's defaults made explicit.
func typeOf(st *stanza.Stanza) string {
	switch {
	case st.Type != "":
		return st.Type
	case st.Kind == stanza.KindMessage:
		return "normal"
	case st.Kind == stanza.KindPresence:
		return "available"
	}
	return ""
}

// describeCEL is for explanations.
func (r *celRule) String() string { return fmt.Sprintf("cel %q", r.src) }
