import { errorMessage } from './errors.js';

/**
 * Regular expressions written in config text: `/pattern/flags`, or a bare pattern where the attribute
 * says so. Compiled once at load time; a bad one is an error that says what is wrong with it.
 */

const REGEX_LITERAL = /^\/(.*)\/([a-z]*)$/s;

/** The source and flags of text written `/pattern/flags`, or `null` when it is not written so. */
export function regexLiteral(text: string): { readonly source: string; readonly flags: string } | null {
  const literal = REGEX_LITERAL.exec(text);
  return literal === null ? null : { source: literal[1] as string, flags: literal[2] as string };
}

/**
 * Compiles a pattern, dropping the `g` and `y` flags (they would make `test` remember `lastIndex`
 * between runs of the same check). Returns the RegExp, or why V8 refused it in a few words
 * (`Unterminated group`, `invalid flags xq`) for the config error.
 */
export function compileRegex(source: string, flags = ''): RegExp | { readonly error: string } {
  try {
    return new RegExp(source, flags.replace(/[gy]/g, ''));
  } catch (error) {
    const message = errorMessage(error);
    // V8 says `Invalid regular expression: /(/: Unterminated group`; the pattern is quoted after `got` anyway.
    return { error: message.replace(/^Invalid regular expression: .*: /s, '').replace(/^Invalid flags supplied to RegExp constructor '(.*)'$/, 'invalid flags $1') };
  }
}

/**
 * Text written `/pattern/flags` compiled as a regular expression, else `null` (the text is meant as a
 * plain substring); `{ error }` for a literal V8 refuses.
 */
export function compileRegexLiteral(text: string): RegExp | { readonly error: string } | null {
  const literal = regexLiteral(text);
  return literal === null ? null : compileRegex(literal.source, literal.flags);
}
