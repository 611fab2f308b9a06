// The PQL editor: CodeMirror 6 (vendor/codemirror.js) with the language's tokens highlighted, its
// names completed from the schema in force, the functions and the sandbox's segment keys, and the
// service's diagnostics underlined at their spans (the checking itself is the API's: segments.js).
import {
  EditorState, EditorView, keymap, drawSelection, highlightActiveLine, defaultKeymap, history, historyKeymap,
  StreamLanguage, HighlightStyle, syntaxHighlighting, bracketMatching, autocompletion, completionKeymap,
  closeBrackets, closeBracketsKeymap, acceptCompletion, setDiagnostics, tags,
} from "./vendor/codemirror.js";

// The grammar's keywords (cdp/dsl/pql.lark), lower case; the language ignores case.
export const KEYWORDS = ("or and not in between is null true false contains starts ends with like matches has any all " +
  "segment exists no event as where then within last today this since before from to count count_distinct sum avg " +
  "min max first").split(" ");
const ATOMS = new Set(["true", "false", "null"]);
const UNITS = /^(seconds?|minutes?|hours?|days?|weeks?|months?|years?)$/i;

// Token names are CodeMirror's highlighting tags; syntaxHighlighting maps them to classes.
function pqlLanguage(functionNames) {
  const keywords = new Set(KEYWORDS);
  return StreamLanguage.define({
    name: "pql",
    token(stream) {
      if (stream.eatSpace()) return null;
      if (stream.match(/^#.*/)) return "comment";
      if (stream.match(/^"(?:[^"\\]|\\.)*"?/) || stream.match(/^'(?:[^'\\]|\\.)*'?/)) return "string";
      if (stream.match(/^[0-9]+(\.[0-9]+)?/)) return "number";
      if (stream.match(/^`[^`\n]*`?/)) return "propertyName";
      if (stream.match(/^(!=|<=|>=|=|<|>|\+|-|\*|\/|%)/)) return "operator";
      const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/);
      if (word) {
        const lower = word[0].toLowerCase();
        if (ATOMS.has(lower)) return "atom";
        if (keywords.has(lower) || UNITS.test(lower)) return "keyword";
        if (functionNames().has(lower) && stream.match(/^\s*\(/, false)) return "variableName.function";
        return "propertyName";
      }
      stream.next();
      return null;
    },
    languageData: { commentTokens: { line: "#" } },
  });
}

const highlight = HighlightStyle.define([
  { tag: tags.keyword, class: "tok-keyword" },
  { tag: tags.atom, class: "tok-keyword" },
  { tag: tags.string, class: "tok-string" },
  { tag: tags.number, class: "tok-number" },
  { tag: tags.propertyName, class: "tok-name" },
  { tag: tags.function(tags.variableName), class: "tok-function" },
  { tag: tags.comment, class: "tok-comment" },
  { tag: tags.operator, class: "tok-operator" },
]);

// Completion: a name being typed (fields, functions, keywords), or a key inside
// `in segment "…"`. `source()` gives the schema, functions and segments of the moment.
function completer(source) {
  return (context) => {
    const { schema, functions, segments } = source();
    const inSegment = context.matchBefore(/segment\s+["'][A-Za-z0-9_\-]*/i);
    if (inSegment) {
      const quote = inSegment.text.search(/["']/);
      return { from: inSegment.from + quote + 1, validFor: /^[A-Za-z0-9_\-]*$/,
               options: segments.map((s) => ({ label: s.key, type: "constant", detail: s.name })) };
    }
    const word = context.matchBefore(/[A-Za-z_][A-Za-z0-9_.]*/);
    if (!word || (word.from === word.to && !context.explicit)) return null;
    if (!context.explicit && word.to - word.from < 2) return null;
    const options = [];
    for (const [name, type] of Object.entries((schema && schema.profile) || {})) {
      options.push({ label: name, type: "property", detail: type, section: "Profile fields" });
    }
    for (const [name, type] of Object.entries((schema && schema.event) || {})) {
      options.push({ label: name, type: "property", detail: type, section: "Event fields" });
    }
    for (const f of functions) {
      options.push({ label: f.name, type: "function", detail: f.signature, info: `${f.doc}\nExample: ${f.example}`,
                     apply: f.name + "(", section: "Functions" });
    }
    for (const k of KEYWORDS) options.push({ label: k, type: "keyword", section: "Keywords", boost: -1 });
    return { from: word.from, options, validFor: /^[A-Za-z_][A-Za-z0-9_.]*$/ };
  };
}

// Offsets in the text from the service's 1-based line/column.
function offsetOf(doc, line, column) {
  if (!line) return doc.length;
  if (line > doc.lines) return doc.length;
  const info = doc.line(line);
  return Math.min(info.from + Math.max((column || 1) - 1, 0), info.to);
}

/** A PQL editor in `parent`, labelled by `labelId`; `onChange(text)` after each edit. */
export function createPqlEditor(parent, { labelId, describedBy, onChange, source, nonce }) {
  const names = () => new Set(source().functions.map((f) => f.name));
  const extensions = [
    history(), drawSelection(), highlightActiveLine(), bracketMatching(), closeBrackets(),
    pqlLanguage(names), syntaxHighlighting(highlight),
    autocompletion({ override: [completer(source)], activateOnTyping: true, icons: false }),
    keymap.of([{ key: "Tab", run: acceptCompletion }, ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap,
               ...completionKeymap]),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({ "aria-labelledby": labelId, "aria-describedby": describedBy, "aria-multiline": "true" }),
    EditorView.updateListener.of((update) => { if (update.docChanged) onChange(update.state.doc.toString()); }),
  ];
  if (nonce) extensions.push(EditorView.cspNonce.of(nonce));
  const view = new EditorView({ state: EditorState.create({ doc: "", extensions }), parent });
  return {
    view,
    get text() { return view.state.doc.toString(); },
    set text(value) { view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } }); },
    focus() { view.focus(); },
    // the service's diagnostics (code, message, hint, line, column, end_line, end_column), underlined
    showDiagnostics(errors, severity = "error") {
      const doc = view.state.doc;
      const diagnostics = errors.map((e) => {
        const from = offsetOf(doc, e.line, e.column);
        const to = Math.max(from, offsetOf(doc, e.end_line || e.line, e.end_column || e.column));
        return { from, to, severity, source: e.code, message: e.message + (e.hint ? `\nHint: ${e.hint}` : "") };
      });
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
  };
}
