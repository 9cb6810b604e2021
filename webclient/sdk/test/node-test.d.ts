// Minimal declarations of the Node built-ins the unit tests use (the
// project does not depend on @types/node).
declare module 'node:test' {
  type TestFn = () => void | Promise<void>;
  /** Declares a test. */
  export function test(name: string, fn: TestFn): Promise<void>;
  /** Groups tests. */
  export function describe(name: string, fn: () => void): void;
  /** Declares a test inside describe. */
  export function it(name: string, fn: TestFn): void;
  export default test;
}

declare module 'node:assert/strict' {
  interface Assert {
    (value: unknown, message?: string): asserts value;
    ok(value: unknown, message?: string): asserts value;
    equal<T>(actual: unknown, expected: T, message?: string): asserts actual is T;
    notEqual(actual: unknown, expected: unknown, message?: string): void;
    deepEqual<T>(actual: unknown, expected: T, message?: string): asserts actual is T;
    throws(fn: () => unknown, expected?: unknown, message?: string): void;
    rejects(p: Promise<unknown> | (() => Promise<unknown>), expected?: unknown, message?: string): Promise<void>;
    match(value: string, re: RegExp, message?: string): void;
  }
  const assert: Assert;
  export default assert;
}
