// null-byte: a logsec detector in C. Flags request targets that carry a percent-encoded NUL byte
// (%00), the trick that cuts a path short in code that hands it to C string functions.
#include <stdlib.h>
#include <string.h>

#include "detector.h"

#define MAX_SCAN 4096      // bytes of the request target examined
#define MAX_EVIDENCE 256   // bytes of evidence returned

// The longest prefix of s[0..len) that is at most max bytes and does not split a UTF-8 sequence.
static size_t utf8_prefix(const uint8_t *s, size_t len, size_t max) {
  if (len <= max) return len;
  size_t end = max;
  while (end > 0 && (s[end] & 0xC0) == 0x80) end--;  // step back over continuation bytes
  return end;
}

// Offset of the first "%00" in s[0..len), or -1.
static long find_nul(const uint8_t *s, size_t len) {
  if (len > MAX_SCAN) len = MAX_SCAN;
  for (size_t i = 0; i + 2 < len; i++)
    if (s[i] == '%' && s[i + 1] == '0' && s[i + 2] == '0') return (long)i;
  return -1;
}

// True when the settings are empty or `{}` (blanks allowed).
static bool no_settings(const uint8_t *s, size_t len) {
  char seen[2];
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') continue;
    if (n == 2) return false;
    seen[n++] = (char)s[i];
  }
  return n == 0 || (n == 2 && seen[0] == '{' && seen[1] == '}');
}

void exports_detector_metadata(detector_metadata_t *ret) {
  // Returned strings are freed by the generated post-return code: always allocate them (dup).
  detector_string_dup(&ret->name, "null-byte");
  detector_string_dup(&ret->version, "0.1.0");
  ret->kind = LOGSEC_PLUGIN_TYPES_PLUGIN_KIND_DETECTOR;
  ret->api_version = 1;
  detector_string_dup(&ret->description, "percent-encoded NUL bytes in the request target (C)");
}

bool exports_detector_configure(detector_string_t *config, detector_string_t *err) {
  bool ok = no_settings(config->ptr, config->len);
  detector_string_free(config);  // arguments belong to the export: free them
  if (!ok) {
    detector_string_dup(err, "null-byte: takes no settings");
    return false;
  }
  detector_string_t msg;
  detector_string_set(&msg, "null-byte configured");  // static text: borrowed, never freed
  logsec_plugin_host_log(LOGSEC_PLUGIN_HOST_LEVEL_INFO, &msg);
  return true;
}

void exports_detector_detect_batch(detector_list_request_t *requests, detector_list_list_finding_t *ret) {
  size_t n = requests->len;
  ret->len = n;
  ret->ptr = n ? calloc(n, sizeof(detector_list_finding_t)) : NULL;  // every inner list starts empty
  if (n && ret->ptr == NULL) abort();
  for (size_t i = 0; i < n; i++) {
    const detector_string_t *uri = &requests->ptr[i].uri;
    long at = find_nul(uri->ptr, uri->len);
    if (at < 0) continue;
    detector_finding_t *f = malloc(sizeof *f);
    if (f == NULL) abort();
    detector_string_dup(&f->category, "null_byte");
    detector_string_dup(&f->rule_id, "null-byte-uri");
    f->score = 5;
    detector_string_dup_n(&f->evidence, (const char *)uri->ptr, utf8_prefix(uri->ptr, uri->len, MAX_EVIDENCE));
    ret->ptr[i].ptr = f;
    ret->ptr[i].len = 1;
  }
  detector_list_request_free(requests);
}
