package controller

import (
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

func namespaceMeta(name string, labels map[string]string) metav1.PartialObjectMetadata {
	return metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// A policy's status lists what it selects sorted, at most maxListedNamespaces of them, and counts
// them all; an invalid selector covers nothing and says InvalidSelector.
func TestPolicyCoverageIsSortedCappedAndCounted(t *testing.T) {
	var many []metav1.PartialObjectMetadata
	for i := 149; i >= 0; i-- {
		many = append(many, namespaceMeta(fmt.Sprintf("team-%03d", i), map[string]string{"tenant": "yes"}))
	}
	many = append(many, namespaceMeta("kube-system", nil))
	bySelector := &v1.PanelAccessPolicy{Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}}}}}

	var st v1.PanelAccessPolicyStatus
	o := setPolicyCoverage(&st, bySelector, many)
	if o.kind != outcomeReady || st.NamespaceCount != 150 || len(st.Namespaces) != maxListedNamespaces ||
		!slices.IsSorted(st.Namespaces) || st.Namespaces[0] != "team-000" || st.Namespaces[99] != "team-099" {
		t.Errorf("coverage of 150 namespaces: outcome %+v, count %d, %d listed from %q to %q; want Ready, 150, "+
			"the first 100 sorted", o, st.NamespaceCount, len(st.Namespaces), st.Namespaces[0], st.Namespaces[len(st.Namespaces)-1])
	}

	byName := &v1.PanelAccessPolicy{Spec: v1.PanelAccessPolicySpec{Namespaces: v1.PolicyNamespaces{
		Names: []string{"team-b", "team-a", "gone"}}}}
	o = setPolicyCoverage(&st, byName, []metav1.PartialObjectMetadata{namespaceMeta("team-a", nil),
		namespaceMeta("team-b", nil), namespaceMeta("team-c", nil)})
	if o.kind != outcomeReady || st.NamespaceCount != 2 || !slices.Equal(st.Namespaces, []string{"team-a", "team-b"}) {
		t.Errorf("coverage by name: outcome %+v, %v (count %d); want [team-a team-b] (2): a named namespace that does "+
			"not exist is not covered", o, st.Namespaces, st.NamespaceCount)
	}

	o = setPolicyCoverage(&st, byName, nil)
	if st.Namespaces != nil || st.NamespaceCount != 0 || o.kind != outcomeReady {
		t.Errorf("coverage of nothing: %#v (count %d), outcome %+v; want nil, 0, Ready", st.Namespaces, st.NamespaceCount, o)
	}

	invalid := byName.DeepCopy()
	invalid.Spec.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"bad key": "x"}}
	st = v1.PanelAccessPolicyStatus{Namespaces: []string{"team-a"}, NamespaceCount: 1}
	o = setPolicyCoverage(&st, invalid, many)
	if o.kind != outcomeWaiting || o.reason != v1.ReasonInvalidSelector || st.Namespaces != nil || st.NamespaceCount != 0 {
		t.Errorf("coverage with an invalid selector: outcome %+v, %v (count %d); want InvalidSelector, nothing",
			o, st.Namespaces, st.NamespaceCount)
	}
}
