// CodeMirror 6, the parts the PQL editor uses (cdp/web/static/pql.js).
export { EditorState, StateEffect, StateField } from "@codemirror/state";
export { EditorView, keymap, placeholder, drawSelection, highlightActiveLine, lineNumbers } from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export { StreamLanguage, HighlightStyle, syntaxHighlighting, bracketMatching } from "@codemirror/language";
export { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap, startCompletion, currentCompletions,
         completionStatus, acceptCompletion } from "@codemirror/autocomplete";
export { linter, lintGutter, setDiagnostics, forEachDiagnostic, lintKeymap } from "@codemirror/lint";
export { tags } from "@lezer/highlight";
