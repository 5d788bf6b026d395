package rules

import (
	"errors"
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/troupehq/troupe/domain"
)

// Compiled is a rule ready to evaluate: regular expressions, the expression
// and every template are compiled once, so Match and Render do no parsing.
// It is immutable and safe for concurrent use.
type Compiled struct {
	Rule *domain.Rule

	criteria []criterion
	expr     *vm.Program // nil when the rule has no expression
	params   node
}

// Compile validates and compiles a rule's criteria, expression and action
// parameter templates. Every problem found is returned, as errors.Join of
// *domain.FieldError: criteria problems at the criterion's Pos, the others at
// the rule's Pos.
func Compile(r *domain.Rule) (*Compiled, error) {
	c := &Compiled{Rule: r}
	var errs []error
	for i := range r.Criteria {
		cr, cerrs := compileCriterion(&r.Criteria[i], "criteria", "")
		errs = append(errs, cerrs...)
		c.criteria = append(c.criteria, cr)
	}
	if r.Expression != "" {
		p, err := compileExpr(r.Expression, false, expr.AsBool())
		if err != nil {
			errs = append(errs, &domain.FieldError{Pos: r.Pos, Field: "expression", Msg: err.Error()})
		}
		c.expr = p
	}
	params, perrs := compileValue(r.Action.Parameters, "action.parameters", r.Pos)
	c.params = params
	if err := errors.Join(append(errs, perrs...)...); err != nil {
		return nil, err
	}
	return c, nil
}

// Match reports whether scope matches every criterion and the expression, if
// any. scope is {"trigger": payload}, with the payload as encoding/json
// decodes it. An error means the expression could not be evaluated; it is
// neither a match nor a non-match.
func (c *Compiled) Match(scope map[string]any) (bool, error) {
	for i := range c.criteria {
		if !c.criteria[i].match(scope) {
			return false, nil
		}
	}
	if c.expr == nil {
		return true, nil
	}
	out, err := expr.Run(c.expr, scope)
	if err != nil {
		return false, fmt.Errorf("evaluate expression: %w", flatten(err))
	}
	ok, _ := out.(bool)
	return ok, nil
}

// Render renders the rule's action parameters against scope: templates are
// evaluated wherever a string holds one, everything else is copied as is.
func (c *Compiled) Render(scope map[string]any) (map[string]any, error) {
	v, err := c.params.render(scope)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}
