import { execFileSync } from 'node:child_process';

/** The CLI tests run the built `dist/cli.js` as a process, as users do: build it once first. */
export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
