/**
 * Check that the project's pages' relative links stay inside the
 * repository and point at something there: inline links `[x](path)`, images
 * `![x](path)`, reference definitions `[x]: path` and HTML `src=`/`href=`
 * attributes. Web links (`http:`, `https:`, `mailto:`) are not fetched; a
 * `#fragment` must name a heading of the target page (GitHub's heading
 * anchors). Paths in code spans that start with `../` are checked the same
 * way (prose like "see `../elsewhere/notes.md`" is a link a reader follows by
 * hand).
 *
 * `deno run -A tools/doc_links.ts [files…]`, run from the repository root,
 * prints `file:line: …` for each broken link and exits 1 when there is one;
 * without files it checks `README.md`, `docs/*.md` and the tree's other
 * pages (`projectDocs`). `tools/doc_links_test.ts` runs the same check on
 * this repository.
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";

/** One link found in a markdown text. */
export interface MarkdownLink {
  /** The target as written (`docs/x.md#part`, `../a.png`). */
  target: string;
  /** 1-based line of the target in the text. */
  line: number;
  /** How it was written. */
  kind: "inline" | "reference" | "html" | "code-span";
}

/** A link that does not resolve, with where it was written. */
export interface BrokenLink {
  /** The markdown file, relative to the repository root. */
  file: string;
  line: number;
  target: string;
  /** What is wrong: the file is missing, it leaves the repository, the heading is missing. */
  reason: string;
}

/** Blank out fenced code blocks and code spans (keeping newlines, so offsets map to lines). */
const blank = (s: string) => s.replace(/[^\n]/g, " ");

/** Blank out fenced code blocks (keeping newlines). */
function blankFences(text: string): string {
  return text.replace(
    /^( {0,3})(`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:^ {0,3}\2[`~]*[ \t]*$|(?![\s\S]))/gm,
    blank,
  );
}

function blankCode(text: string): { prose: string; codeSpans: { content: string; at: number }[] } {
  let prose = blankFences(text);
  const codeSpans: { content: string; at: number }[] = [];
  prose = prose.replace(/(`+)([^`][\s\S]*?)\1(?!`)/g, (whole, _ticks, content, at: number) => {
    codeSpans.push({ content: content.trim(), at });
    return blank(whole);
  });
  return { prose, codeSpans };
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Read a link destination starting at `from` (just after `(`): `<…>` or a run with balanced parentheses. */
function readDestination(text: string, from: number): string | undefined {
  let i = from;
  while (text[i] === " " || text[i] === "\n") i++;
  if (text[i] === "<") {
    const end = text.indexOf(">", i);
    return end < 0 ? undefined : text.slice(i + 1, end);
  }
  let depth = 0;
  const start = i;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") {
      if (depth === 0) break;
      depth--;
    } else if (c === " " || c === "\n") break;
  }
  return i > start ? text.slice(start, i) : undefined;
}

/**
 * Every link in a markdown text, outside fenced code blocks and code spans,
 * plus the code spans that look like a relative path starting with `../`.
 *
 * @example
 * ```ts
 * import { markdownLinks } from "./doc_links.ts";
 * const links = markdownLinks("See [the policies](docs/policies.md#rules).\n\n![chart](a.svg)\n");
 * console.assert(links.length === 2 && links[1].line === 3);
 * ```
 */
export function markdownLinks(text: string): MarkdownLink[] {
  const { prose, codeSpans } = blankCode(text);
  const links: MarkdownLink[] = [];
  for (const m of prose.matchAll(/\]\(/g)) {
    const from = m.index + 2;
    const target = readDestination(prose, from);
    if (target !== undefined) {
      links.push({ target, line: lineAt(prose, prose.indexOf(target, from)), kind: "inline" });
    }
  }
  for (const m of prose.matchAll(/^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)/gm)) {
    const target = m[1].replace(/^<|>$/g, "");
    links.push({ target, line: lineAt(prose, m.index), kind: "reference" });
  }
  for (const m of prose.matchAll(/<(?:img|a|source)\b[^>]*?\b(?:src|href)=["']([^"']+)["']/gi)) {
    links.push({ target: m[1], line: lineAt(prose, m.index), kind: "html" });
  }
  for (const span of codeSpans) {
    if (/^\.\.\/[^\s`]+$/.test(span.content)) {
      links.push({ target: span.content, line: lineAt(text, span.at), kind: "code-span" });
    }
  }
  return links.sort((a, b) => a.line - b.line);
}

/**
 * GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and
 * underscores kept), spaces turned into hyphens; repeats get `-1`, `-2`, ….
 *
 * @example
 * ```ts
 * import { headingAnchors } from "./doc_links.ts";
 * const anchors = headingAnchors("# SOC forwarding: `vector`, unchanged\n## Notes\n## Notes\n");
 * console.assert(anchors.has("soc-forwarding-vector-unchanged") && anchors.has("notes-1"));
 * ```
 */
export function headingAnchors(text: string): Set<string> {
  const prose = blankFences(text).replace(/`([^`\n]*)`/g, "$1");
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const m of prose.matchAll(/^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$/gm)) {
    const textOnly = m[1]
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/<[^>]+>/g, "");
    const slug = textOnly.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(
      /\s/g,
      "-",
    );
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  for (const m of text.matchAll(/<a\s+(?:name|id)=["']([^"']+)["']/gi)) anchors.add(m[1]);
  return anchors;
}

function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Options for {@link checkDocLinks}. */
export interface CheckDocLinksOptions {
  /** The repository root; links may not leave it. */
  root: string;
  /** Markdown files to check, relative to `root`. */
  files: string[];
}

/** The result of {@link checkDocLinks}: how many links were checked and which are broken. */
export interface DocLinksReport {
  checked: number;
  broken: BrokenLink[];
}

/**
 * Check every relative link of `files`: the target must stay inside `root`,
 * exist, and, with a `#fragment` into a markdown file, name one of its
 * headings. Web links (`https:`, `mailto:`, …) are skipped and not counted.
 *
 * @example
 * ```ts
 * import { checkDocLinks } from "./doc_links.ts";
 * const root = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${root}/README.md`, "# Top\n[self](#top) [gone](missing.md)\n");
 * const report = checkDocLinks({ root, files: ["README.md"] });
 * console.assert(report.checked === 2 && report.broken[0].target === "missing.md");
 * ```
 */
export function checkDocLinks(options: CheckDocLinksOptions): DocLinksReport {
  const root = resolve(options.root);
  const broken: BrokenLink[] = [];
  const anchorCache = new Map<string, Set<string>>();
  const anchorsOf = (path: string) => {
    let anchors = anchorCache.get(path);
    if (!anchors) anchorCache.set(path, anchors = headingAnchors(Deno.readTextFileSync(path)));
    return anchors;
  };
  let checked = 0;
  for (const file of options.files) {
    const source = join(root, file);
    for (const link of markdownLinks(Deno.readTextFileSync(source))) {
      if (isExternal(link.target)) continue;
      checked++;
      const report = (reason: string) =>
        broken.push({ file, line: link.line, target: link.target, reason });
      const hash = link.target.indexOf("#");
      const pathPart = decodeURI(hash < 0 ? link.target : link.target.slice(0, hash));
      const fragment = hash < 0 ? "" : decodeURIComponent(link.target.slice(hash + 1));
      const target = pathPart === "" ? source : resolve(dirname(source), pathPart);
      const inside = relative(root, target);
      if (inside.startsWith("..") || resolve(root, inside) !== target) {
        report("leaves the repository");
      } else if (!exists(target)) {
        report("no such file in the repository");
      } else if (fragment && target.endsWith(".md") && !anchorsOf(target).has(fragment)) {
        report(`no heading with the anchor #${fragment} in ${relative(root, target)}`);
      }
    }
  }
  return { checked, broken };
}

/**
 * Paths (a folder or a file, repository-relative) whose markdown is not the
 * project's own pages: dependencies, vendored schema data, bench results.
 */
export const NOT_PROJECT_DOCS: readonly string[] = [
  "node_modules",
  "tests/testdata",
  "bench/results",
];

/** Folders never walked when the tree is not a git work tree. */
const NEVER_WALKED = new Set([".git", "node_modules"]);

/** Markdown files git knows in `root` (tracked, or new and not ignored); null outside git. */
function gitMarkdown(root: string): string[] | null {
  try {
    const out = new Deno.Command("git", {
      args: [
        "-C",
        root,
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
        "--",
        "*.md",
      ],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (!out.success) return null;
    const names = new TextDecoder().decode(out.stdout).split("\0").filter((f) => f !== "");
    // a tracked file deleted in the work tree is listed too; it is not a page any more
    return names.filter((f) => {
      try {
        return Deno.statSync(join(root, f)).isFile;
      } catch {
        return false;
      }
    });
  } catch {
    return null; // no git on this machine
  }
}

/** Every `.md` file under `root`, outside git. */
function walkedMarkdown(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(join(root, dir))) {
      const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory && !NEVER_WALKED.has(entry.name)) walk(path);
      else if (entry.isFile && entry.name.endsWith(".md")) found.push(path);
    }
  };
  walk("");
  return found;
}

/**
 * The markdown files whose links the repository promises: README.md, docs/*.md
 * and every other page a reader meets in the tree (deploy/README.md and the
 * like). In a git work tree these are the files git knows (what `.gitignore`
 * leaves out, scratch folders and virtual environments, is not a page);
 * elsewhere the whole tree is walked. {@linkcode NOT_PROJECT_DOCS} is left out
 * either way.
 *
 * @example
 * ```ts
 * import { projectDocs } from "./doc_links.ts";
 * console.assert(projectDocs(".").includes("README.md"));
 * ```
 */
export function projectDocs(root: string): string[] {
  const listed = gitMarkdown(root) ?? walkedMarkdown(root);
  const excluded = (f: string) => NOT_PROJECT_DOCS.some((p) => f === p || f.startsWith(`${p}/`));
  const rest = listed.filter((f) => f !== "README.md" && !excluded(f)).sort();
  return ["README.md", ...rest];
}

if (import.meta.main) {
  const root = Deno.cwd();
  const files = Deno.args.length > 0
    ? Deno.args.map((f) => relative(root, resolve(f)))
    : projectDocs(root);
  const { checked, broken } = checkDocLinks({ root, files });
  for (const b of broken) console.error(`${b.file}:${b.line}: ${b.target}: ${b.reason}`);
  console.log(`doc links: ${checked} relative links checked, ${broken.length} broken`);
  if (broken.length > 0) Deno.exit(1);
}
