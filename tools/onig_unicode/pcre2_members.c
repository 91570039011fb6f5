// Prints, as a JSON list, the code points that pattern argv[1] matches (anchored, whole
// character) in PCRE2 with UTF and UCP, as runtime/tokenizer/regex.cc compiles patterns.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char** argv) {
  int err; PCRE2_SIZE off;
  pcre2_code* re = pcre2_compile((PCRE2_SPTR)argv[1], PCRE2_ZERO_TERMINATED, PCRE2_UTF|PCRE2_UCP|PCRE2_MULTILINE, &err, &off, NULL);
  if (!re) { fprintf(stderr, "compile error %d\n", err); return 1; }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, NULL);
  printf("["); int first = 1;
  for (unsigned c = 0; c < 0x110000; c++) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    unsigned char b[4]; int n;
    if (c < 0x80) { b[0]=c; n=1; } else if (c < 0x800) { b[0]=0xC0|(c>>6); b[1]=0x80|(c&63); n=2; }
    else if (c < 0x10000) { b[0]=0xE0|(c>>12); b[1]=0x80|((c>>6)&63); b[2]=0x80|(c&63); n=3; }
    else { b[0]=0xF0|(c>>18); b[1]=0x80|((c>>12)&63); b[2]=0x80|((c>>6)&63); b[3]=0x80|(c&63); n=4; }
    if (pcre2_match(re, b, n, 0, PCRE2_ANCHORED, md, NULL) > 0) { printf(first ? "%u" : ",%u", c); first = 0; }
  }
  printf("]\n"); return 0;
}
