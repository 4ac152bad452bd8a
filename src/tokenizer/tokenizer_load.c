/* Picks the tokenizer loader from a path's name and contents. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/files.h"
#include "util/mapped_file.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_gguf(const char *path) {
    FILE *f = dq_fopen_input(path, NULL); /* not a regular file: the loader below says so */
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

static dq_status load_tokenizer_file(const char *path, dq_tokenizer *t, dq_error *err) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strcmp(base, "vocab.json")) return dq_tok_load_vocab_merges(path, t, err);
    if (ends_with(path, ".json")) return dq_tok_load_hf_json(path, t, err);
    if (ends_with(path, ".model")) return dq_tok_load_spm_model(path, t, err);
    return dq_tok_load_llama2c(path, t, err);
}

static dq_status load_file(const char *path, dq_tokenizer *t, dq_error *err) {
    snprintf(t->path, sizeof t->path, "%s", path); /* the file actually read */
    if (is_gguf(path)) return dq_tok_load_gguf(path, t, err); /* the template is inside */
    dq_status st = load_tokenizer_file(path, t, err);
    char dir[PATH_MAX];
    dq_path_dir(dir, sizeof dir, path);
    return st ? st : dq_tok_load_hf_chat_template(t, dir, err); /* an HF folder's, if any */
}

static dq_status load_dir(const char *dir, dq_tokenizer *t, dq_error *err) {
    static const char *const names[] = {"tokenizer.json", "vocab.json", "tokenizer.model",
                                        "tokenizer.bin"};
    char path[sizeof t->path];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (dq_path_join(path, sizeof path, dir, names[i]) && dq_file_exists(path))
            return load_file(path, t, err);
    return dq_fail(err, DQ_ERR_IO,
                   "%s: no tokenizer found (tokenizer.json, vocab.json, tokenizer.model or "
                   "tokenizer.bin); pass --tokenizer",
                   dir);
}

dq_status dq_tokenizer_load(const char *path, dq_tokenizer **out, dq_error *err) {
    *out = NULL;
    dq_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    snprintf(t->path, sizeof t->path, "%s", path);
    dq_status st = dq_is_dir(path) ? load_dir(path, t, err) : load_file(path, t, err);
    if (st) {
        dq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DQ_OK;
}

/* llama2.c folders may hold several tokenizer.bin variants (tok512.bin ...):
 * take the tok*.bin whose vocabulary matches the model. */
static bool find_llama2c_tokenizer(const char *dir, int vocab_size, char *out, size_t cap) {
    if (dq_path_join(out, cap, dir, "tokenizer.bin") && dq_file_exists(out)) return true;
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    char want[32];
    snprintf(want, sizeof want, "tok%d.bin", vocab_size);
    for (struct dirent *e; !found && (e = readdir(d));)
        if (!strcmp(e->d_name, want)) found = dq_path_join(out, cap, dir, e->d_name);
    closedir(d);
    return found;
}

dq_status dq_tokenizer_for_model(const char *model_path, int vocab_size, dq_tokenizer **out,
                                 dq_error *err) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (dq_is_dir(model_path)) snprintf(dir, sizeof dir, "%s", model_path);
    else dq_path_dir(dir, sizeof dir, model_path);
    dq_status st;
    if (!dq_is_dir(model_path) && is_gguf(model_path)) /* the tokenizer is inside */
        st = dq_tokenizer_load(model_path, out, err);
    else if (dq_path_join(path, sizeof path, dir, "tokenizer.json") && dq_file_exists(path))
        st = dq_tokenizer_load(path, out, err);
    else if (find_llama2c_tokenizer(dir, vocab_size, path, sizeof path))
        st = dq_tokenizer_load(path, out, err);
    else
        st = dq_tokenizer_load(dir, out, err);
    if (st) return st;
    if ((*out)->n_vocab > vocab_size) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: tokenizer has %d tokens but the model only %d",
                     (*out)->path, (*out)->n_vocab, vocab_size);
        dq_tokenizer_free(*out);
        *out = NULL;
    }
    return st;
}

const char *dq_tokenizer_path(const dq_tokenizer *t) { return t->path; }
