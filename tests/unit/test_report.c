/* dashq report: sweep rows averaged over seeds, bad rows named and skipped,
 * the markdown table and the gnuplot scripts; the CLI renders SVGs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/report.h"
#include "testutil.h"

static const char *CSV =
    "model,method,bits,group,nsamples,seed,ppl,kld,same_top,quant_seconds\n"
    "m1,rtn,4,128,128,0,10.0,0.0100,0.9,1\n"
    "m1,dashq,4,128,2,0,9.0,0.0040,0.9,1\n"
    "m1,dashq,4,128,2,1,9.2,0.0060,0.9,1\n"
    "m1,dashq,4,128,8,0,9.1,0.0050,0.9,1\n"
    "m1,dashq,3,64,8,0,9.5,0.0200,0.9,1\n"
    "m1,gptq,4,128,2,0,9.9,0.0080,0.9,1\n"
    "m1,gptq,4,128,8,0,8.9,0.0030,0.9,1\n"
    "m1,gptq,x,128,8,0,8.9,0.0030,0.9,1\n"
    "m1,gptq,4,128,8,0,-1,0.0030,0.9,1\n"
    "m1,gp\"tq,4,128,8,0,8,0.0030,0.9,1\n"
    "m1,gptq,4\n"
    "m1,,4,128,8,0,8,0.0030,0.9,1\n";

static char *write_csv(const char *text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s", tu_tmp("sweep.csv"));
    tu_write(path, text, strlen(text));
    return path;
}

static void test_load_and_skip(void **st) {
    (void)st;
    dq_results r;
    dq_error err = {0};
    assert_int_equal(dq_results_load(write_csv(CSV), &r, &err), DQ_OK);
    assert_int_equal(r.n, 7);
    assert_int_equal(r.n_skipped, 5);
    assert_non_null(strstr(r.warnings[0], "sweep.csv:9: bits"));
    assert_non_null(strstr(r.warnings[1], "sweep.csv:10: ppl"));
    assert_non_null(strstr(r.warnings[2], "sweep.csv:11: bad method"));
    assert_non_null(strstr(r.warnings[3], "sweep.csv:12: too few fields"));
    assert_non_null(strstr(r.warnings[4], "sweep.csv:13: bad method")); /* an empty field is not skipped over */
    dq_results_free(&r);
    assert_int_equal(dq_results_load(write_csv("model,method,bits\nm,rtn,4\n"), &r, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "no \"group\" column"));
    assert_true(fabs(dq_bits_per_weight(4, 128) - 4.25) < 1e-12);
}

/* Writes r's report into the test folder and returns report.md's text; frees r and the script list. */
static char *report_md(dq_results *r) {
    dq_error err = {0};
    char **scripts;
    if (dq_report_write(r, "sweep.csv", tu_tmpdir(), &scripts, &err)) fail_msg("%s", err.msg);
    for (char **s = scripts; *s; s++) free(*s);
    free(scripts);
    dq_results_free(r);
    char path[2048];
    snprintf(path, sizeof path, "%s/report.md", tu_tmpdir());
    return tu_read(path, NULL);
}

/* The sweep's second held-out text (ppl_b, kld_b): averaged like the first, empty where a model has none,
 * its own columns in the table only where some row has them; a bad value names the column. */
static void test_second_text(void **st) {
    (void)st;
    static const char *csv = "model,method,bits,group,nsamples,seed,ppl,kld,same_top,quant_seconds,quant_peak_mb,"
                             "quant_cpu_seconds,ppl_b,kld_b,same_top_b\n"
                             "m2,gptq,3,128,2,0,10.0,0.50,0.8,1,10,1,20.0,0.30,0.7\n"
                             "m2,gptq,3,128,2,1,12.0,0.70,0.8,1,10,1,24.0,0.50,0.7\n"
                             "m2,rtn,3,128,8,0,11.0,0.60,0.8,1,10,1,,,\n"
                             "m2,rtn,4,128,8,0,11.0,0.60,0.8,1,10,1,x,0.1,0.7\n"
                             "m2,rtn,4,128,8,0,11.0,0.60,0.8,1,10,1,22,-1,0.7\n";
    dq_results r;
    dq_error err = {0};
    assert_int_equal(dq_results_load(write_csv(csv), &r, &err), DQ_OK);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.n_skipped, 2);
    assert_non_null(strstr(r.warnings[0], "sweep.csv:5: ppl_b"));
    assert_non_null(strstr(r.warnings[1], "sweep.csv:6: kld_b"));
    char *md = report_md(&r);
    assert_non_null(strstr(md, "| KLD (2nd text) |"));
    assert_non_null(strstr(md, "| gptq | 3 | 128 | 3.250 | 2 | 2 | 11.0000 ± 1.4142 | 0.600000 ± 0.141421 | "
                               "22.0000 ± 2.8284 | 0.400000 ± 0.141421 |"));
    assert_non_null(strstr(md, "| rtn | 3 | 128 | 3.250 | 8 | 1 | 11.0000 | 0.600000 | – | – |"));
    free(md);
}

/* The sweep's zero-shot lines: each cell's average of the tasks' headline metrics (acc_norm for PIQA, ARC-Challenge
 * and HellaSwag, acc for the others), the smallest item count, the full-precision line; bad lines named. */
static void test_zeroshot_average(void **st) {
    (void)st;
    static const char *jsonl =
        "{\"cell\": \"m3,fp\", \"task\": \"piqa\", \"n\": 100, \"acc\": 0.6, \"acc_norm\": 0.7}\n"
        "{\"cell\": \"m3,fp\", \"task\": \"boolq\", \"n\": 100, \"acc\": 0.4}\n"
        "{\"cell\": \"m3,dashq,3,128,8\", \"task\": \"arc_easy\", \"n\": 100, \"acc\": 0.5, \"acc_norm\": 0.9}\n"
        "{\"cell\": \"m3,dashq,3,128,8\", \"task\": \"hellaswag\", \"n\": 50, \"acc\": 0.3, \"acc_norm\": 0.4}\n"
        "{\"cell\": \"m3,dashq,3,128,8\", \"task\": \"sst2\", \"n\": 50, \"acc\": 0.3}\n"
        "{\"cell\": \"m3,dashq,3,128,8\", \"task\": \"piqa\", \"n\": 50, \"acc\": 3}\n"
        "not json\n";
    dq_results r;
    dq_error err = {0};
    assert_int_equal(dq_results_load(write_csv("model,method,bits,group,nsamples,seed,ppl,kld\n"
                                               "m3,dashq,3,128,8,0,10.0,0.5\nm3,rtn,3,128,8,0,11.0,0.6\n"),
                                     &r, &err), DQ_OK);
    char zs[1024];
    snprintf(zs, sizeof zs, "%s", tu_tmp("sweep_zeroshot.jsonl"));
    tu_write(zs, jsonl, strlen(jsonl));
    assert_int_equal(dq_results_load_zeroshot(zs, &r, &err), DQ_OK);
    assert_int_equal(r.n_zs, 2);
    assert_int_equal(r.n_skipped, 3);
    assert_non_null(strstr(r.warnings[0], "sweep_zeroshot.jsonl:5: unknown task"));
    assert_non_null(strstr(r.warnings[1], "sweep_zeroshot.jsonl:6: metric"));
    assert_non_null(strstr(r.warnings[2], "sweep_zeroshot.jsonl:7: not a JSON object"));
    assert_int_equal(dq_results_load_zeroshot(tu_tmp("absent.jsonl"), &r, &err), DQ_OK); /* none: nothing added */
    assert_int_equal(r.n_zs, 2);
    char *md = report_md(&r);
    assert_non_null(strstr(md, "Zero-shot average at full precision: 0.550 over 2 tasks (100 items each"));
    assert_non_null(strstr(md, "| dashq | 3 | 128 | 3.250 | 8 | 1 | 10.0000 | 0.500000 | 0.450 (2 × 50) |"));
    assert_non_null(strstr(md, "| rtn | 3 | 128 | 3.250 | 8 | 1 | 11.0000 | 0.600000 | – |"));
    free(md);
}

static void test_report_files(void **st) {
    (void)st;
    dq_results r;
    dq_error err = {0};
    assert_int_equal(dq_results_load(write_csv(CSV), &r, &err), DQ_OK);
    char dir[1024], **scripts;
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    assert_int_equal(dq_report_write(&r, "sweep.csv", dir, &scripts, &err), DQ_OK);
    char path[2048];
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md = tu_read(path, NULL);
    /* seeds 0 and 1 of dashq 4-bit g128 at 2 samples: mean 9.1, sd 0.1414; KLD 0.005 ± 0.001414 */
    assert_non_null(strstr(md, "| dashq | 4 | 128 | 4.250 | 2 | 2 | 9.1000 ± 0.1414 | 0.005000 ± 0.001414 |"));
    assert_non_null(strstr(md, "| rtn | 4 | 128 | 4.250 | 128 | 1 | 10.0000 | 0.010000 |"));
    assert_non_null(strstr(md, "m1_kld_vs_nsamples_b4g128.svg"));
    assert_null(strstr(md, "vs_nsamples_b3g64")); /* one sample count: nothing to plot */
    int n = 0;
    for (char **s = scripts; *s; s++) n++, free(*s);
    free(scripts);
    assert_int_equal(n, 3); /* KLD and perplexity vs bpw, KLD vs samples */
    snprintf(path, sizeof path, "%s/m1_kld_vs_nsamples_b4g128.dat", dir);
    char *dat = tu_read(path, NULL);
    assert_non_null(strstr(dat, "# dashq\n2 0.005 0.0014142136\n8 0.005 0\n"));
    assert_non_null(strstr(dat, "# rtn\n2 0.01 0\n128 0.01 0\n")); /* no calibration: flat */
    free(dat);
    free(md);
    dq_results_free(&r);
}

static void test_cli_renders_svg(void **st) {
    (void)st;
    char cmd[4096], path[2048];
    const char *dir = tu_tmp("rendered");
    snprintf(cmd, sizeof cmd, "%s report %s -o %s >/dev/null 2>&1", DQ_CLI, write_csv(CSV), dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(path, sizeof path, "%s/m1_kld_vs_bpw.svg", dir);
    size_t len;
    char *svg = tu_read(path, &len);
    assert_non_null(strstr(svg, "<svg"));
    free(svg);
    snprintf(cmd, sizeof cmd, "%s report /nonexistent.csv -o %s 2>&1", DQ_CLI, dir);
    char *out;
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "/nonexistent.csv"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_skip),
        cmocka_unit_test(test_second_text),
        cmocka_unit_test(test_zeroshot_average),
        cmocka_unit_test(test_report_files),
        cmocka_unit_test(test_cli_renders_svg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
