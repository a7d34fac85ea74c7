// Package docs holds documents the broker serves as they are kept here: the diaries' API
// description (openapi.json, at /api/v1/openapi.json).
package docs

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the diaries' API (/api/v1).
//
//go:embed openapi.json
var OpenAPI []byte
