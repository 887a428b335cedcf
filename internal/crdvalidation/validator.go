// Package crdvalidation validates custom resources offline the way the API server does, from the
// generated CRD manifests in config/crd/bases: the API server's own library builds the structural
// schema, decodes a request body (pruning unknown fields, dropping nulls, applying defaults) and
// runs the OpenAPI schema validator, the list-type checks and the CEL rules
// (x-kubernetes-validations) in the order its custom resource strategy does. Fuzz targets use it
// to run the deployed validation a million times without an API server; the package's
// TestOfflineValidationAgreesWithAPIServer shows it gives the API server's verdicts.
package crdvalidation

import (
	"context"
	"errors"
	"fmt"
	"os"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"sigs.k8s.io/yaml"
)

// Validator is one CRD version's validation.
type Validator struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator // nil when the schema has no CEL rules
}

// Result is the verdict on one object.
type Result struct {
	// Errors are the field errors the API server would answer with; none: the object is accepted.
	Errors field.ErrorList
	// CELRun says whether the CEL rules ran: the API server skips them when the schema already
	// found a blocking error (a missing, too long or mistyped field, a value not in an enum).
	CELRun bool
	// CELCost is what the CEL rules cost, in the units of the API server's budget.
	CELCost int64
	// CELBudgetLeft is RuntimeCELCostBudget minus CELCost; negative means the budget ran out.
	CELBudgetLeft int64
}

// Load reads a CRD manifest with one version and builds its validation.
func Load(path string) (*Validator, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CRD: %w", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		return nil, fmt.Errorf("cannot decode the CRD %s: %w", path, err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Schema == nil {
		return nil, fmt.Errorf("the CRD %s must have one version with a schema", path)
	}
	internal := &apiextensionsinternal.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(
		crd.Spec.Versions[0].Schema, internal, nil); err != nil {
		return nil, fmt.Errorf("cannot convert the schema of %s: %w", path, err)
	}
	s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("the schema of %s is not structural: %w", path, err)
	}
	s = s.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		return nil, fmt.Errorf("cannot prune the defaults of %s: %w", path, err)
	}
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("cannot build the schema validator of %s: %w", path, err)
	}
	return &Validator{structural: s, schema: schemaValidator, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}, nil
}

// Decode reads a request body as the API server does: JSON into an object, fields the schema does
// not know pruned, nulls of fields that are not nullable dropped, defaults applied.
func (v *Validator) Decode(body []byte) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("the body is not an object")
	}
	structuralpruning.Prune(obj, v.structural, true)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, v.structural)
	structuraldefaulting.Default(obj, v.structural)
	return obj, nil
}

// Create validates a new object (decoded), as the API server's create does: its status is dropped
// first (the status subresource owns it).
func (v *Validator) Create(ctx context.Context, obj map[string]any) Result {
	delete(obj, "status")
	errs := apiservervalidation.ValidateCustomResource(nil, obj, v.schema)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	return v.runCEL(ctx, errs, obj, nil)
}

// Update validates a change of old into obj (both decoded), as the API server's update does: the
// status kept from old (the status subresource owns it), with ratcheting (a value left as it was
// is not validated again) and the transition rules (oldSelf) of CEL.
func (v *Validator) Update(ctx context.Context, obj, old map[string]any) Result {
	delete(obj, "status")
	if status, ok := old["status"]; ok {
		obj["status"] = status
	}
	correlated := common.NewCorrelatedObject(obj, old, &model.Structural{Structural: v.structural})
	errs := apiservervalidation.ValidateCustomResourceUpdate(nil, obj, old, v.schema,
		apiservervalidation.WithRatcheting(correlated))
	if len(structurallisttype.ValidateListSetsAndMaps(nil, v.structural, old)) == 0 {
		errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	}
	return v.runCEL(ctx, errs, obj, old, cel.WithRatcheting(correlated))
}

func (v *Validator) runCEL(ctx context.Context, errs field.ErrorList, obj, old map[string]any, opts ...cel.Option) Result {
	r := Result{Errors: errs, CELBudgetLeft: celconfig.RuntimeCELCostBudget}
	if v.cel == nil {
		return r
	}
	if blocking(errs) {
		r.Errors = append(r.Errors, field.Invalid(nil, nil, "some validation rules were not checked because the object "+
			"was invalid; correct the existing errors to complete validation"))
		return r
	}
	var oldObj any
	if old != nil {
		oldObj = old
	}
	celErrs, left := v.cel.Validate(ctx, nil, v.structural, obj, oldObj, celconfig.RuntimeCELCostBudget, opts...)
	r.Errors = append(r.Errors, celErrs...)
	r.CELRun, r.CELBudgetLeft, r.CELCost = true, left, celconfig.RuntimeCELCostBudget-left
	return r
}

// blocking is the API server's rule for skipping the CEL rules (its strategy's hasBlockingErr).
func blocking(errs field.ErrorList) bool {
	for _, err := range errs {
		switch err.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany,
			field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}
