package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestVersioned(t *testing.T) {
	var seen, version string
	h := versioned(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen, version = r.URL.Path, apiVersion(r.Context())
	}))
	for _, tc := range []struct {
		path, wantPath, wantVersion string
		status                      int
	}{
		{"/_ping", "/_ping", APIVersion, http.StatusOK},
		{"/v1.24/images/json", "/images/json", "1.24", http.StatusOK},
		{"/v1.41/images/example.com/app:1/json", "/images/example.com/app:1/json", "1.41", http.StatusOK},
		{"/v1.23/images/json", "", "", http.StatusBadRequest},
		{"/v1.57/images/json", "", "", http.StatusBadRequest},
	} {
		seen, version = "", ""
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		assert.Check(t, is.Equal(rec.Code, tc.status), tc.path)
		assert.Check(t, is.Equal(seen, tc.wantPath), tc.path)
		assert.Check(t, is.Equal(version, tc.wantVersion), tc.path)
		assert.Check(t, is.Equal(rec.Header().Get("Api-Version"), APIVersion), tc.path)
	}
}

func TestParseFilters(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		want    map[string][]string
		invalid bool
	}{
		{"", map[string][]string{}, false},
		{`{"dangling":{"true":true},"label":{"b":true,"a=1":true,"off":false}}`, map[string][]string{"dangling": {"true"}, "label": {"a=1", "b"}}, false},
		{`{"dangling":["false"]}`, map[string][]string{"dangling": {"false"}}, false},
		{`{"dangling":`, nil, true},
		{`["dangling"]`, nil, true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/images/json?filters="+url.QueryEscape(tc.raw), nil)
		got, err := parseFilters(r)
		if tc.invalid {
			assert.Check(t, is.ErrorContains(err, "invalid filter"), tc.raw)
			continue
		}
		assert.Check(t, err, tc.raw)
		assert.Check(t, is.DeepEqual(got, tc.want), tc.raw)
	}
}
