// Types for dist-state.mjs (plain JavaScript: the binary loads it before any TypeScript support).
export declare const DIST: string;
export declare const STAMP: string;
export declare function sourceFiles(root: string): { sources: string[]; newest: number };
export declare function distState(root: string): { current: boolean; reason: string };
