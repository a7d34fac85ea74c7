package storage_test

import (
	"testing"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, open)
		})
	}
}
