/* Chat templates as llama.cpp applies them without Jinja: its
 * llm_chat_detect_template recognises a family from marker strings in the
 * template text (tokenizer.chat_template), and llm_chat_apply_template
 * renders the messages with a fixed routine for that family (src/llama-chat.cpp
 * at c392e5094). We port both; the Jinja itself is never interpreted, so a
 * template's own defaults (SmolLM2's default system message, Llama-3's
 * <|begin_of_text|>) are not produced: BOS comes from the tokenizer, as in
 * llama.cpp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashq.h"
#include "util/error.h"

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} out_buf;

static void put_n(out_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void put(out_buf *b, const char *s) { put_n(b, s, strlen(s)); }

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); } /* C isspace */

/* llama.cpp's trim(): leading and trailing whitespace removed. */
static void put_trimmed(out_buf *b, const char *s) {
    size_t n = strlen(s);
    while (n > 0 && is_space(*s)) s++, n--;
    while (n > 0 && is_space(s[n - 1])) n--;
    put_n(b, s, n);
}

static bool role_is(const dq_chat_msg *m, const char *role) { return !strcmp(m->role, role); }

/* One family's renderer; `variant` selects between the flavours a routine
 * of llama.cpp covers (its booleans, in the order of the table below). */
typedef void (*render_fn)(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o);

static void render_chatml(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)variant;
    for (size_t i = 0; i < n; i++) {
        put(o, "<|im_start|>"), put(o, m[i].role), put(o, "\n"), put(o, m[i].content), put(o, "<|im_end|>\n");
    }
    if (add_ass) put(o, "<|im_start|>assistant\n");
}

static void render_phi4(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)variant;
    for (size_t i = 0; i < n; i++) {
        put(o, "<|im_start|>"), put(o, m[i].role), put(o, "<|im_sep|>"), put(o, m[i].content), put(o, "<|im_end|>");
    }
    if (add_ass) put(o, "<|im_start|>assistant<|im_sep|>");
}

static void render_llama3(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)variant;
    for (size_t i = 0; i < n; i++) {
        put(o, "<|start_header_id|>"), put(o, m[i].role), put(o, "<|end_header_id|>\n\n");
        put_trimmed(o, m[i].content), put(o, "<|eot_id|>");
    }
    if (add_ass) put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

enum { L2_SYS = 1, L2_BOS_INSIDE = 2, L2_STRIP = 4 };

/* Llama 2: BOS before the first [INST] comes from the tokenizer; a system
 * message goes inside the first [INST] (in <<SYS>> where supported); no
 * assistant header is added (the model continues after [/INST]). */
static void render_llama2(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)add_ass;
    bool inside = true;
    put(o, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            inside = true;
            put(o, variant & L2_BOS_INSIDE ? "<s>[INST] " : "[INST] ");
        }
        out_buf c = {0};
        if (variant & L2_STRIP) put_trimmed(&c, m[i].content);
        else put(&c, m[i].content);
        const char *content = c.p ? c.p : "";
        if (role_is(&m[i], "system")) {
            if (variant & L2_SYS) put(o, "<<SYS>>\n"), put(o, content), put(o, "\n<</SYS>>\n\n");
            else put(o, content), put(o, "\n");
        } else if (role_is(&m[i], "user")) {
            put(o, content), put(o, " [/INST]");
        } else {
            put(o, content), put(o, "</s>");
            inside = false;
        }
        o->oom |= c.oom;
        free(c.p);
    }
}

enum { MI_LEADING_SPACE = 1, MI_TRAILING_SPACE = 2, MI_TRIM_ASSISTANT = 4 };

/* Mistral v1 / v3 / v3-tekken: the system message opens the [INST] block. */
static void render_mistral(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)add_ass;
    const char *lead = variant & MI_LEADING_SPACE ? " " : "", *trail = variant & MI_TRAILING_SPACE ? " " : "";
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            put(o, lead), put(o, "[INST]"), put(o, trail);
            inside = true;
        }
        if (role_is(&m[i], "system")) {
            put(o, m[i].content), put(o, "\n\n");
        } else if (role_is(&m[i], "user")) {
            put(o, m[i].content), put(o, lead), put(o, "[/INST]");
        } else {
            put(o, trail);
            if (variant & MI_TRIM_ASSISTANT) put_trimmed(o, m[i].content);
            else put(o, m[i].content);
            put(o, "</s>");
            inside = false;
        }
    }
}

static void render_mistral_v7(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)add_ass, (void)variant;
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) put(o, "[SYSTEM_PROMPT] "), put(o, m[i].content), put(o, "[/SYSTEM_PROMPT]");
        else if (role_is(&m[i], "user")) put(o, "[INST] "), put(o, m[i].content), put(o, "[/INST]");
        else put(o, " "), put(o, m[i].content), put(o, "</s>");
    }
}

/* Phi-3 (variant 0) and Zephyr (1): "<|role|>\n" content end-marker "\n". */
static void render_phi3(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    for (size_t i = 0; i < n; i++) {
        put(o, "<|"), put(o, m[i].role), put(o, "|>\n"), put(o, m[i].content);
        put(o, variant ? "<|endoftext|>\n" : "<|end|>\n");
    }
    if (add_ass) put(o, "<|assistant|>\n");
}

/* Gemma has no system role: the system text opens the next user turn. */
static void render_gemma(const dq_chat_msg *m, size_t n, bool add_ass, unsigned variant, out_buf *o) {
    (void)variant;
    const char *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sys = m[i].content;
            continue;
        }
        bool model = role_is(&m[i], "assistant") || role_is(&m[i], "model");
        put(o, "<start_of_turn>"), put(o, model ? "model" : m[i].role), put(o, "\n");
        if (sys && !model) {
            out_buf t = {0};
            put_trimmed(&t, sys);
            if (t.n) put(o, t.p), put(o, "\n\n"), sys = NULL;
            o->oom |= t.oom;
            free(t.p);
        }
        put_trimmed(o, m[i].content), put(o, "<end_of_turn>\n");
    }
    if (add_ass) put(o, "<start_of_turn>model\n");
}

/* The families we render, by llama.cpp's names. end_of_turn: the token that
 * closes an assistant turn, where generation stops besides EOS. */
static const struct {
    const char *name;
    render_fn render;
    unsigned variant;
    const char *end_of_turn;
} FAMILIES[] = {
    {"chatml", render_chatml, 0, "<|im_end|>"},
    {"phi4", render_phi4, 0, "<|im_end|>"},
    {"llama3", render_llama3, 0, "<|eot_id|>"},
    {"llama2", render_llama2, 0, "</s>"},
    {"llama2-sys", render_llama2, L2_SYS, "</s>"},
    {"llama2-sys-bos", render_llama2, L2_SYS | L2_BOS_INSIDE, "</s>"},
    {"llama2-sys-strip", render_llama2, L2_SYS | L2_STRIP, "</s>"},
    {"mistral-v1", render_mistral, MI_LEADING_SPACE | MI_TRAILING_SPACE, "</s>"},
    {"mistral-v3", render_mistral, MI_TRAILING_SPACE | MI_TRIM_ASSISTANT, "</s>"},
    {"mistral-v3-tekken", render_mistral, 0, "</s>"},
    {"mistral-v7", render_mistral_v7, 0, "</s>"},
    {"phi3", render_phi3, 0, "<|end|>"},
    {"zephyr", render_phi3, 1, "<|endoftext|>"},
    {"gemma", render_gemma, 0, "<end_of_turn>"},
};
#define N_FAMILIES (sizeof FAMILIES / sizeof *FAMILIES)

/* Every name llama.cpp's LLM_CHAT_TEMPLATES knows (a template text equal to
 * one of them selects it); those not in FAMILIES are refused by name. */
static const char *const LLAMACPP_NAMES[] = {
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
    "mistral-v3-tekken", "mistral-v7", "phi3", "phi4", "falcon3", "zephyr", "monarch", "gemma", "orion",
    "openchat", "vicuna", "vicuna-orca", "deepseek", "deepseek2", "deepseek3", "command-r", "llama3",
    "chatglm3", "chatglm4", "glmedge", "minicpm", "exaone3", "rwkv-world", "granite", "gigachat", "megrez",
};

static bool has(const char *t, const char *s) { return strstr(t, s) != NULL; }

static const char *detect_mistral_llama2(const char *t) {
    if (has(t, "[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
        if (has(t, " [INST]")) return "mistral-v1";
        if (has(t, "\"[INST]\"")) return "mistral-v3-tekken";
        return "mistral-v3";
    }
    if (has(t, "content.strip()")) return "llama2-sys-strip";
    if (has(t, "bos_token + '[INST]")) return "llama2-sys-bos";
    if (has(t, "<<SYS>>")) return "llama2-sys";
    return "llama2";
}

/* llm_chat_detect_template, condition for condition and in its order (the
 * order matters: a Phi-4 template also holds "<|im_start|>"). */
const char *dq_chat_detect(const char *t) {
    for (size_t i = 0; i < sizeof LLAMACPP_NAMES / sizeof *LLAMACPP_NAMES; i++)
        if (!strcmp(t, LLAMACPP_NAMES[i])) return LLAMACPP_NAMES[i];
    if (has(t, "<|im_start|>")) return has(t, "<|im_sep|>") ? "phi4" : "chatml";
    if (!strncmp(t, "mistral", 7) || has(t, "[INST]")) return detect_mistral_llama2(t);
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return "phi3";
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return has(t, "</s>") ? "falcon3" : "glmedge";
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return "zephyr";
    if (has(t, "bos_token + message['role']")) return "monarch";
    if (has(t, "<start_of_turn>")) return "gemma";
    if (has(t, "'\\n\\nAssistant: ' + eos_token")) return "orion";
    if (has(t, "GPT4 Correct ")) return "openchat";
    if (has(t, "USER: ") && has(t, "ASSISTANT: ")) return has(t, "SYSTEM: ") ? "vicuna-orca" : "vicuna";
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return "deepseek";
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) return "command-r";
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return "llama3";
    if (has(t, "[gMASK]sop")) return "chatglm3";
    if (has(t, "[gMASK]<sop>")) return "chatglm4";
    if (has(t, "<用户>")) return "minicpm";
    if (has(t, "'Assistant: ' + message['content'] + eos_token")) return "deepseek2";
    if (has(t, "<｜Assistant｜>") && has(t, "<｜User｜>") && has(t, "<｜end▁of▁sentence｜>")) return "deepseek3";
    if (has(t, "[|system|]") && has(t, "[|assistant|]") && has(t, "[|endofturn|]")) return "exaone3";
    if (has(t, "rwkv-world")) return "rwkv-world";
    if (has(t, "<|start_of_role|>")) return "granite";
    if (has(t, "message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"))
        return "gigachat";
    if (has(t, "<|role_start|>")) return "megrez";
    return NULL;
}

static int family_index(const char *name) {
    for (size_t i = 0; name && i < N_FAMILIES; i++)
        if (!strcmp(FAMILIES[i].name, name)) return (int)i;
    return -1;
}

const char *dq_chat_end_of_turn(const char *family) {
    int i = family_index(family);
    return i < 0 ? NULL : FAMILIES[i].end_of_turn;
}

static void family_list(char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FAMILIES && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", FAMILIES[i].name);
}

/* The template's first line, cut short, to show in an error. */
static void excerpt(const char *t, char *buf, size_t cap) {
    size_t n = strcspn(t, "\n");
    snprintf(buf, cap, "%.*s%s", (int)(n < 60 ? n : 60), t, n > 60 || t[n] ? " ..." : "");
}

dq_status dq_chat_format(const char *tmpl, const char *origin, const dq_chat_msg *msgs, size_t n, bool add_assistant,
                         char **out, const char **family, dq_error *err) {
    *out = NULL;
    if (family) *family = NULL;
    char names[400], ex[80];
    family_list(names, sizeof names);
    if (!tmpl || !*tmpl)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: no chat template (tokenizer.chat_template); name one of: %s",
                       origin, names);
    const char *name = dq_chat_detect(tmpl);
    int i = family_index(name);
    if (i < 0) {
        excerpt(tmpl, ex, sizeof ex);
        if (name)
            return dq_fail(err, DQ_ERR_UNSUPPORTED,
                           "%s: chat template of llama.cpp's family \"%s\", which dashq does not render (%s)", origin,
                           name, names);
        return dq_fail(err, DQ_ERR_UNSUPPORTED,
                       "%s: chat template not recognised as any family llama.cpp knows (dashq renders %s): \"%s\"",
                       origin, names, ex);
    }
    for (size_t k = 0; k < n; k++)
        if (!msgs[k].role || !msgs[k].content)
            return dq_fail(err, DQ_ERR_ARG, "chat message %zu has no role or content", k);
    out_buf o = {0};
    FAMILIES[i].render(msgs, n, add_assistant, FAMILIES[i].variant, &o);
    put(&o, ""); /* an empty conversation still yields a string */
    if (o.oom) {
        free(o.p);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory rendering the chat template");
    }
    *out = o.p;
    if (family) *family = FAMILIES[i].name;
    return DQ_OK;
}
