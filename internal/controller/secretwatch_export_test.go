package controller

// Test hooks for the Secret watch, for the external controller_test package.

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretListPage is how many Secrets one of the watch's list requests asks for.
const SecretListPage = secretListPage

// ListPage is one page of a namespace's Secrets as the watch's reflector receives it.
func (w *secretWatch) ListPage(ctx context.Context, ns string, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	page, err := secretListWatch{w: w, ns: ns}.list(ctx, opts)
	if err != nil {
		return nil, err
	}
	return page.(*metav1.PartialObjectMetadataList), nil
}
